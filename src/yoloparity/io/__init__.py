"""Files the project writes: atomically (:mod:`.atomic`), and detections in every exchange form (:mod:`.detections`)."""
