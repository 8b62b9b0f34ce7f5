"""The scorecard: its model (model.py), its YAML parser (parser.py), the shipped default
(default.yaml), and the pure-Python reference scorer the tests compare the SQL with (reference.py)."""
