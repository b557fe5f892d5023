"""egpu.api"""
