"""Small helpers shared by every stage (atomic writes, safe paths, hashing)."""
