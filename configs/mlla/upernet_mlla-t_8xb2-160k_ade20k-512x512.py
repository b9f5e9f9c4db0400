_base_ = '../_base_/upernet_mlla_ade20k-512x512.py'
