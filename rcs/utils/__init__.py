"""Small shared helpers: progress bars, JSONL metrics, seeding, devices, hashing."""
