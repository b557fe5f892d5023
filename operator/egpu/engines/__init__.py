"""egpu.engines"""
