"""fer-annotate, the offline tool: read image and video files, annotate their frames (in this process or on a
fer-server), and write annotated copies, JSON lines, emotion timelines and a batch's CSV table."""
