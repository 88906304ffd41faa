"""REST routes of the model server: V1 (`v1.py`), Open Inference Protocol V2 (`v2.py`), error mapping (`errors.py`)."""
