"""simulator layer of the wsfinal testbed (see DESIGN.md)."""
