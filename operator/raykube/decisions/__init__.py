"""Pure decisions: observed state in, plan and status out. No I/O here."""
