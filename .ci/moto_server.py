"""moto's server, with its DynamoDB requests handled one at a time.

DynamoDB's transactions are serialisable; moto's are not. moto's TransactWriteItems
copies every table it touches when it starts and, when a condition fails, puts those
copies back, erasing whatever another request committed in between: under load, two
concurrent refreshes of one refresh token both succeeded, and a demotion that answered
200 vanished. Handling DynamoDB requests one at a time gives the tests DynamoDB's
guarantee. Only DynamoDB is serialised: SQS long polls still wait side by side.

.ci/setup installs this as `storefront-moto-server` in the tools venv; the tests start it
on a free loopback port (`-H 127.0.0.1 -p PORT`, moto_server's own flags).
"""

import sys
import threading

from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_one_at_a_time = threading.Lock()
_call_action = DynamoHandler.call_action


def _serialised_call_action(self):
    with _one_at_a_time:
        return _call_action(self)


DynamoHandler.call_action = _serialised_call_action

if __name__ == "__main__":
    sys.exit(main())
