_base_ = '../_base_/upernet_vmamba_ade20k-512x512.py'
