"""egpu.sim"""
