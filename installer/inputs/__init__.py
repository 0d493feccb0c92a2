"""What the lecturer gives: the options (options.py, each declared once), the roster
(roster.py), the course packages file (course_packages.py), ``--source`` (source.py). Read
and checked with every error listed; nothing here touches the machine."""
