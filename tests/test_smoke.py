"""A first end-to-end check of the fixture on both clients."""
from tornado import testing, web

from tests import support


class OKHandler(web.RequestHandler):
    def get(self) -> None:
        self.write({'status': 'ok'})


class SmokeCases(support.ServerTestCase):
    handlers = [('/', OKHandler)]

    @testing.gen_test
    async def test_get(self) -> None:
        """A GET returns the decoded JSON body."""
        response = await support.RecordingClient().http_fetch(
            self.get_url('/'))
        self.assertEqual(response.body, {'status': 'ok'})


class TestSmokeSimple(SmokeCases):
    pass


class TestSmokeCurl(SmokeCases):
    implementation = support.CURL
