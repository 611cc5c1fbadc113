"""moto's server answering one request at a time.

moto_server answers on several threads and does not lock its tables, so two
conditional writes to one item can both pass their condition; DynamoDB never
lets that happen. Served one request at a time, moto's conditional writes and
transactions are atomic, as DynamoDB's are: the concurrency tests run on this.

    moto_serial.py PORT
"""
import os
import sys

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

port = int(sys.argv[1])
os.environ.setdefault("MOTO_PORT", str(port))
app = DomainDispatcherApplication(create_backend_app)
run_simple("127.0.0.1", port, app, threaded=False, request_handler=MotoRequestHandler)
