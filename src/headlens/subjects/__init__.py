"""Models headlens trains itself to have real subjects offline (the easy-VQA demo models)."""
