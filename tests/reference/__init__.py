"""Reference checks against the records' own code (issue 11).

``synth`` writes a small deterministic dataset in the challenge layout (token shards and a SentencePiece model built
piece by piece, no training), ``weights`` the deterministic fixture weights and the statistics both sides compare,
``harness`` runs a record's ``train_gpt.py`` on CPU on that data with those weights and writes the numbers to
``fixtures/<preset>.json``. Only numbers are kept in the repository; the record code is read from a checkout of
openai/parameter-golf given on the harness command line.
"""
