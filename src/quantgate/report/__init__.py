"""The reports a run leaves in reports/: summary.json rows (``rows``), the study-style
tables (``tables``) and plots (``plots``) rendered to summary.md and summary.html
(``render``), and the pytest plugin object that gathers the rows as tests finish
(``collector``). ``python -m quantgate.report REPORTS_DIR`` renders summary.md/html from a
summary.json (the reports of a run killed before its end)."""
