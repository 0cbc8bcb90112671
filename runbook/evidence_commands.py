"""`asup evidence build|signoff` and `asup durability encode|scrub|decode-drill`."""

from __future__ import annotations

from pathlib import Path

import msgspec
import typer

from projections import checklist as checklist_mod
from projections.artifact_paths import ArtifactPaths
from runbook import evidence
from runbook.options import LOCK_TIMEOUT_OPT, REMOTE_LOGS_OPT, ROOT_OPT
from runbook.options import remote_logs as remote_logs_of
from runbook.output import console, emit_json, line, reports_errors, styled
from runbook.report_commands import print_checklist

evidence_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Build and seal the final evidence pack; record the sign-off.\n\nExample: asup evidence build --root artifacts",
    no_args_is_help=True,
)
durability_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Erasure-coded sidecars: encode, scrub, decode drill.\n\nExample: asup durability scrub PACK PACK.ec.json",
    no_args_is_help=True,
)
JSON_OPT = typer.Option(False, "--json", help="Machine-readable output.")


@evidence_app.command("build")
@reports_errors
def build(
    root: Path = ROOT_OPT, as_json: bool = JSON_OPT, lock_timeout: float = LOCK_TIMEOUT_OPT, remote_logs: list[str] = REMOTE_LOGS_OPT
) -> None:
    """Build a new final evidence pack (inventory with sizes and BLAKE3, log heads, gate
    results, checklist and escalation as of sealing) and seal it with an event. An earlier
    pack and its sidecar move to history/.

    Example: asup evidence build --root artifacts --log nats://127.0.0.1:4222/TRANSFERS
    """
    paths = ArtifactPaths(root, remote_logs_of(remote_logs))
    pack, digest, seq = evidence.build_pack(paths)
    if as_json:
        emit_json({"pack": str(pack), "digest": digest, "seal_seq": seq})
    else:
        console().print(f"sealed {pack} ({digest}) at ops seq {seq}", markup=False)


@evidence_app.command("signoff")
@reports_errors
def signoff(
    root: Path = ROOT_OPT, as_json: bool = JSON_OPT, lock_timeout: float = LOCK_TIMEOUT_OPT, remote_logs: list[str] = REMOTE_LOGS_OPT
) -> None:
    """Record the sign-off: the checklist as it stands now, pass only when every item passes.
    Exit 1 unless the sign-off is pass.

    Example: asup evidence signoff --root artifacts
    """
    paths = ArtifactPaths(root, remote_logs_of(remote_logs))
    verdict, items = evidence.sign_off(paths)
    if as_json:
        emit_json({"verdict": verdict, "signoff": str(paths.signoff), **checklist_mod.render(items)})
    else:
        print_checklist(items)
        console().print(f"sign-off: {verdict} ({paths.signoff})", markup=False)
    if verdict != "pass":
        raise typer.Exit(1)


@durability_app.command("encode")
@reports_errors
def encode(
    pack: Path = typer.Argument(..., help="The file to protect."),
    k: int = typer.Option(8, "--k", help="Data fragments."),
    m: int = typer.Option(4, "--m", help="Parity fragments (fragments that may be lost)."),
    codec: str = typer.Option("isa_l_rs_vand", "--codec", help="pyeclib ec_type: isa_l_rs_vand | liberasurecode_rs_vand."),
    root: Path = ROOT_OPT,
    as_json: bool = JSON_OPT,
    lock_timeout: float = LOCK_TIMEOUT_OPT,
) -> None:
    """Write PACK.ec.json (codec, k, m, sizes, the pack's BLAKE3, each fragment's file and
    digest) and the fragments beside it, PACK.ec.00 .. (each binds itself to the pack and
    verifies itself). An older sidecar there is kept as `NAME.superseded-<n>`.

    Example: asup durability encode artifacts/asupersync/v1/asupersync_final_evidence_pack_v1.json --k 8 --m 4
    """
    target, sidecar = evidence.encode_sidecar(ArtifactPaths(root), pack, k=k, m=m, codec=codec)
    summary = {
        "sidecar": str(target),
        "codec": codec,
        "k": k,
        "m": m,
        "fragment_size": sidecar.fragment_size,
        "pack_digest": sidecar.pack_digest,
    }
    if as_json:
        emit_json(summary)
    else:
        console().print(f"wrote {target}: {codec} k={k} m={m}, {k + m} fragments of {sidecar.fragment_size} bytes", markup=False)


@durability_app.command("scrub")
@reports_errors
def scrub(
    pack: Path = typer.Argument(..., help="The protected file."),
    sidecar: Path = typer.Argument(..., help="Its .ec.json sidecar."),
    repair: bool = typer.Option(False, "--repair", help="Restore a corrupt or missing pack / damaged fragments (replaced bytes are kept)."),
    root: Path = ROOT_OPT,
    as_json: bool = JSON_OPT,
    lock_timeout: float = LOCK_TIMEOUT_OPT,
) -> None:
    """Verify the manifest, every fragment and the pack, and the pack's digest against the
    seals in the operations log; name every damaged part; tell drift (the pack matches a
    later seal: stale sidecar) from corruption, and both from a sidecar nothing vouches for
    (unsealed). --repair keeps what it replaces as `NAME.damaged-<n>`. Exit 0 when healthy.

    Example: asup durability scrub PACK PACK.ec.json --repair
    """
    report = evidence.run_scrub(ArtifactPaths(root), pack, sidecar, repair=repair)
    if as_json:
        emit_json({**msgspec.to_builtins(report), "healthy": report.healthy})
    else:
        color = "green" if report.healthy else "red"
        kept = f" (kept {', '.join(report.kept_files)})" if report.kept_files else ""
        console().print(line(styled(report.status, color), f": {report.detail}{kept}"))
    if not report.healthy:
        raise typer.Exit(1)


@durability_app.command("decode-drill")
@reports_errors
def decode_drill(
    sidecar: Path = typer.Argument(..., help="The .ec.json sidecar."),
    out: Path = typer.Argument(..., help="Where to write the decoded pack."),
    seed: int = typer.Option(7, "--seed", help="Chooses which m fragments are dropped."),
    root: Path = ROOT_OPT,
    as_json: bool = JSON_OPT,
    lock_timeout: float = LOCK_TIMEOUT_OPT,
) -> None:
    """Drop m fragments (chosen by the seed), decode from the rest, check the digest, prove
    that one more loss fails closed, write OUT and append a decode proof (the count grows).

    Example: asup durability decode-drill PACK.ec.json /tmp/recovered.json --seed 7
    """
    event = evidence.run_drill(ArtifactPaths(root), sidecar, out, seed=seed)
    if as_json:
        emit_json(msgspec.to_builtins(event))
    elif event.ok:
        console().print(
            line(
                styled("decoded", "green"),
                f" without fragments {event.dropped}; one more loss failed closed: "
                f"{event.one_more_loss_failed_closed}; proof #{event.proof_count}" + (f" ({event.detail})" if event.detail else ""),
            )
        )
    else:
        console().print(line(styled("decode drill failed", "red"), f": {event.detail}"))
    if not (event.ok and event.one_more_loss_failed_closed):
        raise typer.Exit(1)
