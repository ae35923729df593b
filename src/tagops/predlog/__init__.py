"""The prediction and feedback log: schema, writer with its journal, and the reader the offline loop uses."""
