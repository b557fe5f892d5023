"""egpu.domain"""
