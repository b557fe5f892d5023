"""egpu.controllers"""
