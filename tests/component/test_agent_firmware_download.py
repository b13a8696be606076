"""The agent's resumable downloader against a real aiohttp server on loopback (cuts, refusals)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from posfleet.agent.backoff import Backoff
from posfleet.agent.firmware_download import DownloadRequest, ResumableDownload
from posfleet.agent.firmware_errors import DownloadFailed
from tests.component.agent_image_server import ImageServer, serve_image

READ_CHUNK = 16 * 1024
IMAGE = random.Random(7).randbytes(1_000_003)


class Sleeps:
    """Records the backoff delays instead of waiting them out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def _download(
    server: ImageServer,
    tmp_path: Path,
    sleeps: Sleeps,
    *,
    sha256: str | None = None,
    size: int | None = None,
    max_attempts: int = 10,
) -> ResumableDownload:
    sha = sha256 or server.sha256
    return ResumableDownload(
        DownloadRequest(server.url, server.token, sha, size or len(IMAGE), terminal_id="T-1"),
        tmp_path / f"{sha}.part",
        tmp_path / f"{sha}.img",
        chunk_bytes=READ_CHUNK,
        timeout_s=5,
        backoff=Backoff(base_s=0.5, cap_s=4.0),
        max_attempts=max_attempts,
        sleep=sleeps,
    )


async def test_a_download_cut_three_times_resumes_and_resends_at_most_one_chunk(
    tmp_path: Path,
) -> None:
    sleeps = Sleeps()
    async with serve_image(ImageServer(IMAGE, cut_after=[150_001, 300_007, 123_457])) as server:
        download = _download(server, tmp_path, sleeps)
        progress: list[int] = []
        download._progress = lambda done, _total: progress.append(done)
        image = await download.run()

    assert hashlib.sha256(image.read_bytes()).hexdigest() == server.sha256
    assert not download.partial.exists()
    assert [s.cut for s in server.served] == [True, True, True, False]
    assert [s.status for s in server.served] == [200, 206, 206, 206]
    for before, after in zip(server.served, server.served[1:], strict=False):
        assert after.range_start > 0
        resent = before.range_start + before.sent - after.range_start
        assert 0 <= resent <= READ_CHUNK, (before, after)
        # The resume names the image it continues: the ETag the server gave.
        assert after.headers["If-Range"] == server.etag
        assert after.headers["Range"] == f"bytes={after.range_start}-"
        assert after.headers["X-Posfleet-Terminal-Id"] == "T-1"
    assert download.stats.cuts == 3 and download.stats.restarts == 0
    assert len(sleeps.delays) == 3 and all(0 < d <= 4.0 for d in sleeps.delays)
    assert progress[-1] == len(IMAGE) and progress == sorted(progress)


async def test_a_new_downloader_resumes_from_the_partial_file_a_killed_one_left(
    tmp_path: Path,
) -> None:
    sleeps = Sleeps()
    async with serve_image(ImageServer(IMAGE, cut_after=[400_000])) as server:
        first = _download(server, tmp_path, sleeps, max_attempts=1)
        with pytest.raises(DownloadFailed) as gave_up:
            await first.run()
        assert gave_up.value.reason == "unreachable"
        kept = first.partial.stat().st_size
        assert kept >= 400_000 - READ_CHUNK

        second = _download(server, tmp_path, sleeps)
        image = await second.run()

    assert second.stats.resumed_from == kept
    assert server.served[1].range_start == kept and server.served[1].status == 206
    assert second.stats.bytes_received == len(IMAGE) - kept
    assert hashlib.sha256(image.read_bytes()).hexdigest() == server.sha256


@pytest.mark.parametrize(
    ("status", "reason", "words"),
    [
        (403, "http_403", "token is invalid, expired"),
        (404, "http_404", "not found"),
        (410, "http_410", "no longer available"),
        (400, "http_400", "400"),
    ],
)
async def test_permanent_answers_stop_the_download_at_once_with_the_reason(
    tmp_path: Path, status: int, reason: str, words: str
) -> None:
    sleeps = Sleeps()
    async with serve_image(ImageServer(IMAGE, statuses=[status])) as server:
        with pytest.raises(DownloadFailed, match=words) as failed:
            await _download(server, tmp_path, sleeps).run()
    assert failed.value.reason == reason
    assert len(server.served) == 1 and sleeps.delays == []
    assert f"status {status} on cue" in str(failed.value)  # the server's own words


async def test_a_refused_token_is_permanent(tmp_path: Path) -> None:
    async with serve_image(ImageServer(IMAGE)) as server:
        download = _download(server, tmp_path, Sleeps())
        download.request = DownloadRequest(server.url, "x" * 32, server.sha256, len(IMAGE))
        with pytest.raises(DownloadFailed, match="403") as failed:
            await download.run()
    assert failed.value.reason == "http_403" and len(server.served) == 1


async def test_transient_answers_are_retried_with_backoff(tmp_path: Path) -> None:
    sleeps = Sleeps()
    async with serve_image(ImageServer(IMAGE, statuses=[503, 502, 429])) as server:
        image = await _download(server, tmp_path, sleeps).run()
    assert image.read_bytes() == IMAGE
    assert [s.status for s in server.served] == [503, 502, 429, 200]
    assert len(sleeps.delays) == 3


async def test_an_unreachable_server_is_given_up_after_the_attempts(tmp_path: Path) -> None:
    sleeps = Sleeps()
    async with serve_image(ImageServer(IMAGE)) as server:
        url = server.url
    download = _download(server, tmp_path, sleeps, max_attempts=4)
    download.request = DownloadRequest(url, server.token, server.sha256, len(IMAGE))
    with pytest.raises(DownloadFailed, match="gave up after 4 attempts") as failed:
        await download.run()
    assert failed.value.reason == "unreachable" and len(sleeps.delays) == 3


async def test_a_wrong_sha256_fails_and_deletes_what_arrived(tmp_path: Path) -> None:
    other = hashlib.sha256(b"the signed image").hexdigest()
    async with serve_image(ImageServer(IMAGE)) as server:
        download = _download(server, tmp_path, Sleeps(), sha256=other)
        with pytest.raises(DownloadFailed, match="does not match the manifest") as failed:
            await download.run()
    assert failed.value.reason == "sha256_mismatch"
    assert not download.partial.exists() and not download.image.exists()
    assert len(server.served) == 1


async def test_a_resumed_image_that_does_not_verify_is_fetched_once_more_from_zero(
    tmp_path: Path,
) -> None:
    async with serve_image(ImageServer(IMAGE)) as server:
        download = _download(server, tmp_path, Sleeps())
        # What a power loss may leave: the right size on disk, the wrong bytes in it.
        download.partial.write_bytes(b"\0" * 500_000)
        image = await download.run()
    assert image.read_bytes() == IMAGE
    assert [s.range_start for s in server.served] == [500_000, 0]
    assert download.stats.restarts == 1


async def test_a_server_with_a_shorter_file_is_a_truncated_image(tmp_path: Path) -> None:
    async with serve_image(ImageServer(IMAGE[:600_000])) as server:
        download = _download(server, tmp_path, Sleeps(), sha256=hashlib.sha256(IMAGE).hexdigest())
        download.request = DownloadRequest(
            server.url, server.token, hashlib.sha256(IMAGE).hexdigest(), len(IMAGE)
        )
        with pytest.raises(DownloadFailed, match="truncated or wrong image") as short:
            await download.run()
    assert short.value.reason == "size_mismatch"


async def test_a_range_beyond_the_servers_file_is_416_and_permanent(tmp_path: Path) -> None:
    sha = hashlib.sha256(IMAGE).hexdigest()
    async with serve_image(ImageServer(IMAGE[:600_000])) as server:
        download = _download(server, tmp_path, Sleeps(), sha256=sha)
        download.request = DownloadRequest(server.url, server.token, sha, len(IMAGE))
        download.partial.write_bytes(IMAGE[:700_000])
        download.etag_path.write_text(server.etag)  # the part came from this server
        with pytest.raises(DownloadFailed, match="416") as refused:
            await download.run()
    assert refused.value.reason == "http_416" and len(server.served) == 1


async def test_a_server_that_ignores_the_range_makes_the_download_start_again(
    tmp_path: Path,
) -> None:
    async with serve_image(ImageServer(IMAGE, cut_after=[300_000], ignore_range=True)) as server:
        download = _download(server, tmp_path, Sleeps())
        image = await download.run()
    assert image.read_bytes() == IMAGE
    assert [s.status for s in server.served] == [200, 200]
    assert download.stats.restarts == 1
