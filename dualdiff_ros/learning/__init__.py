"""Learning on the robot: the durable store of observed outcomes (pure python, no ROS)."""
from .observations import ObservationStore, StoredObservation

__all__ = ["ObservationStore", "StoredObservation"]
