"""What the process needs around the service, rather than the service itself: its own Envoy
(`envoy.py`), TLS files (`tls.py`), temporary folders (`temp_dirs.py`), the admin token's file
(`private_files.py`), the ready file (`ready_file.py`), and the files it reads besides its code
(`resources.py`). `server/app.py` and `server/supervisor.py` start the service with them.
"""
