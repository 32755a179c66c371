"""What drives the gateway from outside: the ``gateway`` command line, the evaluation and
fine-tuning tools, the upstream simulator, and the admin API's client.

The server (everything else under :mod:`gateway`) never imports from here;
``tests/unit/test_layout.py`` holds it to that.
"""
