"""Merge operators: pure tensor functions and the name -> operator table."""
