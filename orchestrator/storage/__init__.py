"""Where runs live: the store's layout and records, local paths or URIs, exported model folders."""
