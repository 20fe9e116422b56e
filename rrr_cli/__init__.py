"""The application layer: the ``rrr`` command, ``rrr run``'s process supervisor and the
progress display. It sits on top of everything (rrr, tasks, workers) and imports them plainly;
nothing imports it. Commands call functions that return results, and only render them."""
