"""The clinical reading of a run: nerve injury, skin and vessel safety, the summary and the printed report."""
