"""The one pipeline every public call runs through, for local files, folders, shards and URIs.

::

    locate    local path, or fetch a remote model's files to a private folder / stage + upload
    choose    the backend: format= > suffix checked against content > magic bytes; folders by layout
    options   the backend's typed options; unknown ones refused with the valid names
    metadata  read (embedded or sidecar), validated as hostile input
    verify    checksum / sha256 pin, over exactly the files the backend will read
    gate      the ONE trust decision, from the backend's declared risk and the scan
    backend   reads or writes its own bytes, nothing else

The pipeline knows no framework and no format by name: backends declare, the pipeline decides.
"""
