"""A loopback OpenDART: ``list.json`` and ``corpCode.xml`` as the real API answers them.

Routes go on a :class:`tests.servers.FakeSource` under ``/api``. Filings are added
with :meth:`DartStandIn.file` (newest last, listed newest first, as OpenDART does);
``list.json`` pages them by ``page_no``/``page_count`` for the asked ``corp_code`` and
``bgn_de``..``end_de``, answers ``013`` when there are none, and checks the key.
:meth:`DartStandIn.fail_next` scripts statuses (``020``, ``800``, a malformed body …)
for the next requests. ``corpCode.xml`` serves a zip of the known companies.

PYTEST_DONT_REWRITE: test modules import their helpers from here.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import deque
from dataclasses import dataclass, field
from datetime import date

from aiohttp import web

from tests.servers import FakeSource

KEY = "0123456789abcdef0123456789abcdef01234567"
NAVER = ("00266961", "NAVER", "035420")
KAKAO = ("00258801", "카카오", "035720")


@dataclass
class Filing:
    rcept_no: str
    corp_code: str
    corp_name: str
    stock_code: str
    report_nm: str
    flr_nm: str
    rcept_dt: str
    rm: str = ""

    def row(self) -> dict[str, str]:
        return {
            "corp_code": self.corp_code,
            "corp_name": self.corp_name,
            "stock_code": self.stock_code,
            "corp_cls": "Y",
            "report_nm": self.report_nm,
            "rcept_no": self.rcept_no,
            "flr_nm": self.flr_nm,
            "rcept_dt": self.rcept_dt,
            "rm": self.rm,
        }


@dataclass
class DartStandIn:
    server: FakeSource
    corps: list[tuple[str, str, str]] = field(default_factory=lambda: [NAVER, KAKAO])
    filings: list[Filing] = field(default_factory=list)
    faults: deque[web.Response] = field(default_factory=deque)
    key: str = KEY
    _serial: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.server.route("/api/list.json", self._list)
        self.server.route("/api/corpCode.xml", self._corp_codes)

    @property
    def url(self) -> str:
        return self.server.url("/api")

    def file(
        self, corp: tuple[str, str, str], report_nm: str, day: date, *, rm: str = ""
    ) -> Filing:
        """Receive a filing of ``corp`` on ``day``: the next receipt number of that day."""
        stamp = day.strftime("%Y%m%d")
        self._serial[stamp] = self._serial.get(stamp, 0) + 1
        filing = Filing(
            rcept_no=f"{stamp}{self._serial[stamp]:06d}",
            corp_code=corp[0],
            corp_name=corp[1],
            stock_code=corp[2],
            # OpenDART pads report names with spaces.
            report_nm=report_nm + "      ",
            flr_nm=corp[1],
            rcept_dt=stamp,
            rm=rm,
        )
        self.filings.append(filing)
        return filing

    def fail_next(self, *answers: dict[str, object] | bytes) -> None:
        """The next requests to list.json get these answers (a status document or a body)."""
        for answer in answers:
            body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
            self.faults.append(web.Response(body=body, content_type="application/json"))

    def list_requests(self) -> list[dict[str, str]]:
        from urllib.parse import parse_qsl

        return [dict(parse_qsl(r.query_string)) for r in self.server.requests_to("/api/list.json")]

    def corp_code_requests(self) -> int:
        return len(self.server.requests_to("/api/corpCode.xml"))

    async def _list(self, request: web.Request) -> web.StreamResponse:
        if self.faults:
            return self.faults.popleft()
        q = request.query
        if q.get("crtfc_key") != self.key:
            return web.json_response({"status": "010", "message": "등록되지 않은 키입니다."})
        begin, end = q.get("bgn_de", "00000000"), q.get("end_de", "99999999")
        page_no, page_count = int(q.get("page_no", "1")), int(q.get("page_count", "10"))
        if not 1 <= page_count <= 100:
            return web.json_response(
                {"status": "100", "message": "필드의 부적절한 값입니다. (page_count)"}
            )
        rows = [
            f
            for f in reversed(self.filings)
            if f.corp_code == q.get("corp_code") and begin <= f.rcept_dt <= end
        ]
        if not rows:
            return web.json_response({"status": "013", "message": "조회된 데이타가 없습니다."})
        pages = -(-len(rows) // page_count)
        page = rows[(page_no - 1) * page_count : page_no * page_count]
        return web.json_response(
            {
                "status": "000",
                "message": "정상",
                "page_no": page_no,
                "page_count": page_count,
                "total_count": len(rows),
                "total_page": pages,
                "list": [f.row() for f in page],
            }
        )

    async def _corp_codes(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("crtfc_key") != self.key:
            return web.json_response({"status": "010", "message": "등록되지 않은 키입니다."})
        entries = "".join(
            f"<list><corp_code>{code}</corp_code><corp_name>{name}</corp_name>"
            f"<stock_code>{stock}</stock_code><modify_date>20240101</modify_date></list>"
            for code, name, stock in [*self.corps, ("00999999", "비상장", " ")]
        )
        xml = f'<?xml version="1.0" encoding="UTF-8"?><result>{entries}</result>'
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("CORPCODE.xml", xml.encode("utf-8"))
        return web.Response(body=buffer.getvalue(), content_type="application/x-msdownload")
