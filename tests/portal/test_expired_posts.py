"""``PortalRoute(keeps_expired_posts=True)``: a form post whose session ended reaches the page
(which may keep what was written) instead of being dropped; a post from another site does not."""

from __future__ import annotations

from portal_helpers import csrf_token
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from siegel import PortalRoute, hookimpl


async def keeper(request: Request) -> Response:
    portal = request.state.portal
    if request.method == "GET":
        return HTMLResponse(f'<form><input name="csrf_token" value="{portal.csrf_token}"></form>')
    form = await portal.form()
    problem = portal.session_problem.value if portal.session_problem else "none"
    tag = await portal.mac("test", str(form.get("text")))
    return HTMLResponse(f"kept {form.get('text')} ({problem}) {tag}")


class Keeper:
    @hookimpl
    def siegel_register_portal_routes(self):
        return [PortalRoute(name="keeper.write", path="/write", endpoint=keeper,
                            methods=("GET", "POST"), keeps_expired_posts=True)]


async def test_a_post_after_the_session_ended_reaches_a_keeping_page(portal) -> None:
    async with portal(plugins=[("keeper", Keeper())]) as p:
        token = csrf_token((await p.client.get("/t/test/write")).text)
        fresh = await p.client.post("/t/test/write", data={"text": "eins", "csrf_token": token})
        assert fresh.text.startswith("kept eins (none) ")
        p.harness.clock.advance(minutes=16)
        late = await p.client.post("/t/test/write", data={"text": "eins", "csrf_token": token})
        assert late.status_code == 200
        assert late.text.startswith("kept eins (idle) ")
        assert late.text.split()[-1] == fresh.text.split()[-1]  # the MAC is stable
        p.client.cookies.clear()  # a browser that lost its cookie
        lost = await p.client.post("/t/test/write", data={"text": "drei", "csrf_token": token})
        assert lost.text.startswith("kept drei (none) ")
        forged = await p.client.post("/t/test/write", data={"text": "zwei"},
                                     headers={"origin": "https://evil.example"})
        assert forged.status_code == 403


async def test_other_pages_still_send_an_ended_session_to_the_explanation(portal) -> None:
    async with portal() as p:
        token = await p.contact_form()
        p.harness.clock.advance(minutes=16)
        response = await p.post_contact(token)
        assert response.status_code == 303
        assert "/session-expired?reason=idle" in response.headers["location"]
