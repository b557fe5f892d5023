"""egpu.observability"""
