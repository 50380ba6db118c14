"""localstripe, with the `charge.refunded` event Stripe sends when a charge is refunded.

localstripe (a stateful fake of Stripe's API) sends signed webhooks for payment intents,
but none when a refund is made; Stripe sends `charge.refunded` with the charge, which is
what moves a paid Storefront order to refunded. This wrapper adds that event and nothing
else. .ci/setup installs it as `storefront-localstripe` in the tools venv; the tests start
it on a free loopback port (`--port PORT --from-scratch`, localstripe's own flags).
"""

import sys

from localstripe import resources
from localstripe.server import start
from localstripe.webhooks import schedule_webhook

_refund_init = resources.Refund.__init__


def _refund_and_announce(self, *args, **kwargs):
    _refund_init(self, *args, **kwargs)
    charge = resources.Charge._api_retrieve(self.charge)
    schedule_webhook(resources.Event("charge.refunded", charge))


resources.Refund.__init__ = _refund_and_announce

if __name__ == "__main__":
    sys.exit(start())
