"""File readers and writers: frames in, HDR images and previews out. No backend knowledge here."""
