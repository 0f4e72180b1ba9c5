"""Deep Compression: Huffman, k-means, pruning, the .sqz format and the real Deep Compression file.

Budget: about 60 s on 2 cores for this file (the real-file accuracy test dominates).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from squeezelab.cli.main import main
from squeezelab.compress import huffman
from squeezelab.compress.deep import compress_state_dict, relative_index
from squeezelab.compress.pipeline import compress_model
from squeezelab.compress.prune import ApplyMasks, MaskKeeper, load_masks, magnitude_masks, save_masks
from squeezelab.compress.sharing import kmeans_1d, linear_init, optimal_kmeans_1d, share_weights
from squeezelab.compress.sqz import MAGIC, read_sqz, write_sqz
from squeezelab.data.preprocess import Preprocess
from squeezelab.data.sources import folder_images
from squeezelab.errors import SqueezelabError
from squeezelab.models import create_model
from squeezelab.weights.checkpoint import CheckpointMeta
from squeezelab.weights.loader import build_model, load_weights, model_from_state
from squeezelab.weights.registry import BUNDLED_DIR

DC_FILE = BUNDLED_DIR / "squeezenet_v1.0_deep_compression" / "compressed_SqueezeNet.net"
#: squeezenet1_1 at 6 bits, least-squares codebooks on 16 CIFAR-10 train images: agreement measured 90.2% on the
#: 204 fixed images (k-means alone: 71.6%); threshold 85% leaves 5.2 points (10 images) of margin.
AGREEMENT_6BIT = 85.0


def _small_model(seed: int = 0) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    torch.manual_seed(seed)
    model = create_model("squeezenet1_1", num_classes=10)
    meta = CheckpointMeta("squeezenet1_1", num_classes=10, preprocess=Preprocess(crop=64, resize=64),
                          categories=[f"c{i}" for i in range(10)])
    return model.state_dict(), meta


# --- Huffman -----------------------------------------------------------------------------------------------


def test_huffman_round_trip_and_optimal_length():
    rng = np.random.default_rng(0)
    symbols = rng.geometric(0.2, size=50_000).clip(0, 63)
    freqs = np.bincount(symbols, minlength=64)
    lengths = huffman.code_lengths(freqs)
    data, nbits = huffman.encode(symbols, lengths)
    assert np.array_equal(huffman.decode(data, nbits, symbols.size, lengths), symbols)
    used = lengths[freqs > 0]
    assert np.isclose((2.0 ** -used.astype(float)).sum(), 1.0)  # Kraft equality: a complete prefix code
    p = freqs[freqs > 0] / freqs.sum()
    entropy = -(p * np.log2(p)).sum()
    assert entropy <= nbits / symbols.size < entropy + 1  # Shannon's bound for Huffman codes
    assert nbits == int((freqs * lengths).sum())


def test_huffman_textbook_lengths_and_cap():
    # CLRS 16.3 example: a:45 b:13 c:12 d:16 e:9 f:5 -> lengths 1,3,3,3,4,4
    assert huffman.code_lengths(np.array([45, 13, 12, 16, 9, 5])).tolist() == [1, 3, 3, 3, 4, 4]
    fib = np.array([1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181, 6765])
    assert huffman.code_lengths(fib, max_len=huffman.MAX_CODE_LEN).max() <= huffman.MAX_CODE_LEN
    symbols = np.repeat(np.arange(20), fib)
    lengths = huffman.code_lengths(fib)
    data, nbits = huffman.encode(symbols, lengths)
    assert np.array_equal(huffman.decode(data, nbits, symbols.size, lengths), symbols)
    with pytest.raises(SqueezelabError):
        huffman.decode(data, nbits - 1, symbols.size, lengths)


# --- k-means -----------------------------------------------------------------------------------------------


def test_kmeans_matches_scikit_learn_with_linear_init():
    values = torch.rand(4000, generator=torch.Generator().manual_seed(1), dtype=torch.float64) ** 2
    centroids, labels = kmeans_1d(values, 16, relocate_empty=False)
    init = linear_init(values, 16).numpy().reshape(-1, 1)
    ref = KMeans(16, init=init, n_init=1, algorithm="lloyd", tol=0.0, max_iter=1000).fit(values.numpy()[:, None])
    assert np.allclose(np.sort(ref.cluster_centers_.ravel()), centroids.numpy(), atol=1e-12)
    assert np.array_equal(ref.labels_, labels.numpy())


def test_optimal_kmeans_is_the_brute_force_optimum():
    rng = np.random.default_rng(3)
    values = np.sort(rng.normal(size=30))
    weights = rng.integers(1, 5, size=30).astype(float)
    k = 4
    best = np.inf  # exhaustive search over all split points of the sorted values
    from itertools import combinations
    for cuts in combinations(range(1, 30), k - 1):
        edges = (0, *cuts, 30)
        sse = 0.0
        for a, b in zip(edges[:-1], edges[1:]):
            mean = np.average(values[a:b], weights=weights[a:b])
            sse += (weights[a:b] * (values[a:b] - mean) ** 2).sum()
        best = min(best, sse)
    centroids = optimal_kmeans_1d(values, weights, k)
    nearest = np.abs(values[:, None] - centroids[None]).argmin(1)
    assert np.isclose((weights * (values - centroids[nearest]) ** 2).sum(), best)


def test_share_weights_reserves_zero_and_is_exact_for_few_values():
    weight = torch.tensor([[0.5, -0.25, 0.0, 0.5], [0.125, 0.0, -0.25, 0.5]])
    mask = weight != 0
    codebook, codes = share_weights(weight, mask, bits=3, reserve_zero=True)
    assert codebook.numel() == 8 and codebook[0] == 0.0 and (codes > 0).all()
    assert torch.equal(codebook[codes], weight[mask])


# --- pruning -----------------------------------------------------------------------------------------------


def test_magnitude_masks_density_and_survival_through_sgd(tmp_path):
    state, _ = _small_model()
    masks = magnitude_masks(state, 0.3)
    for name, mask in masks.items():
        assert int(mask.sum()) == round(0.3 * mask.numel())
        kept = state[name].abs()[mask]
        assert kept.min() >= state[name].abs()[~mask].max()  # the largest magnitudes are the kept ones
    glob = magnitude_masks(state, 0.3, scope="global")
    assert abs(sum(int(m.sum()) for m in glob.values()) - 0.3 * sum(m.numel() for m in glob.values())) <= 1
    save_masks(tmp_path / "m.safetensors", masks)
    masks = load_masks(tmp_path / "m.safetensors")
    model = create_model("squeezenet1_1", num_classes=10)
    model.load_state_dict(state)
    keeper = MaskKeeper(model, masks).attach()
    after_step = ApplyMasks(masks)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(2, 3, 64, 64)).sum().backward()
        opt.step()
        after_step(model)
    for name, param in model.named_parameters():
        if name in masks:
            assert (param[~masks[name]] == 0).all()
    keeper.detach()


# --- .sqz format -------------------------------------------------------------------------------------------


def test_sqz_round_trip_is_bit_exact_and_loads_anywhere(tmp_path):
    state, meta = _small_model()
    report = compress_model(state, meta, bits=5, density=0.4, output=tmp_path / "m.sqz")
    assert (tmp_path / "m.sqz").read_bytes()[:7] == MAGIC
    assert report.file_bytes == (tmp_path / "m.sqz").stat().st_size
    decoded, meta2 = read_sqz(tmp_path / "m.sqz")
    expected = report.compressed.state_dict()
    assert list(decoded) == list(state)
    for key in state:
        assert torch.equal(decoded[key], expected[key]), key
    for name, tensor in report.compressed.shared.items():
        assert torch.unique(decoded[name]).numel() <= 2 ** 5
        assert abs(float((decoded[name] != 0).float().mean()) - 0.4) < 0.01
    assert meta2.architecture == meta.architecture and meta2.categories == meta.categories
    assert meta2.preprocess == meta.preprocess and "bits=5" in meta2.extra["compression"]
    model = build_model(tmp_path / "m.sqz", architecture="squeezenet1_1")  # the weights loader detects the magic
    x = torch.randn(1, 3, 64, 64)
    ref = create_model("squeezenet1_1", num_classes=10).eval()
    ref.load_state_dict(expected)
    assert torch.equal(model(x), ref(x))
    sizes = dict(report.sizes)
    assert sizes["dense fp32"] > sizes["pruned"] > sizes["quantized"] > report.file_bytes


def test_relative_index_fillers_match_deep_compression_layout():
    positions = np.array([0, 3, 40])
    codes, gaps = relative_index(positions, np.array([5, 6, 7]), index_bits=4)
    # 40 - 3 - 1 = 36 zeros: two fillers of 15 (+1 each) then a gap of 4
    assert gaps.tolist() == [0, 2, 15, 15, 4] and codes.tolist() == [5, 6, 0, 0, 7]
    assert (np.cumsum(gaps + 1) - 1)[[0, 1, 4]].tolist() == [0, 3, 40]


def test_corrupted_or_foreign_sqz_is_a_one_line_error(tmp_path, capsys):
    state, meta = _small_model()
    path = tmp_path / "m.sqz"
    write_sqz(path, compress_state_dict(state, bits=4, density=0.5), meta)
    data = bytearray(path.read_bytes())
    for offset in (9, len(data) // 2, len(data) - 6):
        bad = bytearray(data)
        bad[offset] ^= 0x40
        (tmp_path / "bad.sqz").write_bytes(bytes(bad))
        with pytest.raises(SqueezelabError, match="checksum"):
            read_sqz(tmp_path / "bad.sqz")
    (tmp_path / "short.sqz").write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(SqueezelabError):
        read_sqz(tmp_path / "short.sqz")
    bad = bytearray(data)
    bad[7] = 9
    (tmp_path / "v9.sqz").write_bytes(bytes(bad))
    with pytest.raises(SqueezelabError, match="version 9"):
        read_sqz(tmp_path / "v9.sqz")
    (tmp_path / "bad.sqz").write_bytes(bytes(data[:100]) + b"\x00" + bytes(data[101:]))
    out = tmp_path / "never.sqz"
    assert main(["compress", "squeezenet1_1", "--weights", str(tmp_path / "bad.sqz"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "corrupted" in err and not out.exists()


# --- the real Deep Compression SqueezeNet (shared/data README section 2) -------------------------------------


@pytest.fixture(scope="module")
def dc_weights():
    return load_weights(DC_FILE)


def test_reencoding_the_deep_compression_file_at_8_bits_is_lossless_and_small(dc_weights, tmp_path):
    state, meta = dc_weights
    report = compress_model(state, meta, bits=8, output=tmp_path / "dc8.sqz")
    assert report.file_bytes <= 700_000  # paper Table 2: 0.66MB
    # The relative-index entries (fillers included) equal the file's header counts N_i (README section 2).
    entries = {k: t.entries for k, t in report.compressed.shared.items()}
    assert entries["features.0.weight"] == 13902 and entries["classifier.1.weight"] == 105973
    assert report.compressed.kept == 415_921
    # Our stage accounting of the 8-bit quantized stage is the original file's layout: 675,763 B minus
    # its 104-byte header, and 6 B of rounding to whole bytes per layer there.
    assert abs(report.sizes[2][1] - (DC_FILE.stat().st_size - 104)) <= 26
    decoded, _ = read_sqz(tmp_path / "dc8.sqz")
    for key in state:
        assert torch.equal(decoded[key], state[key]), key


def test_deep_compression_at_6_bits_fits_half_a_megabyte_and_keeps_accuracy(dc_weights, tmp_path,
                                                                            imagenet_samples):
    from squeezelab.compress.measure import accuracy, labelled_batches

    state, meta = dc_weights  # 6 bits without retraining: bias correction on 6 skimage photos (not the eval set)
    from squeezelab.compress.measure import skimage_photos

    report = compress_model(state, meta, bits=6, output=tmp_path / "dc6.sqz", calibration=skimage_photos(),
                            refine="bias")
    assert report.file_bytes <= 500_000  # paper Table 2: 0.47MB
    images = labelled_batches(imagenet_samples, meta)
    original = build_model(DC_FILE)
    compressed = build_model(tmp_path / "dc6.sqz")
    top1_original, _ = accuracy(original, images)
    top1_compressed, _ = accuracy(compressed, images)
    assert top1_original == pytest.approx(64.0, abs=1.0)  # README section 5.3 reference decode
    assert top1_compressed >= top1_original - 1.0


def test_claim_rows_and_demo_stage(tmp_path):
    from squeezelab.compress.claims import deep_compression_sizes
    from squeezelab.demo.compress import stage
    from squeezelab.demo import DemoContext, Report

    rows = deep_compression_sizes()
    assert len(rows) == 4 and all(row.holds for row in rows), [(r.claim, r.measured) for r in rows]
    ctx = DemoContext(Report(tmp_path), quick=True)
    stage(ctx)
    text = (tmp_path / "report.md").read_text()
    assert "Huffman (.sqz file)" in text and "exactly: yes" in text
    assert ctx.artifacts["sqz_8bit"].is_file()


# --- fidelity, data-aware weight sharing, codebook fine-tuning (issue 16) -----------------------------------


def test_least_squares_codebook_beats_kmeans_on_layer_output_error():
    from squeezelab.compress.sharing import least_squares_codebook

    torch.manual_seed(0)
    weight = torch.randn(16, 72).double()
    mask = torch.ones_like(weight, dtype=torch.bool)
    mask[:, :10] = False  # a sparse layer: pruned weights point at the frozen 0.0 of entry 0
    weight = weight * mask
    mix, scale = torch.eye(72) + torch.randn(72, 72) / 8, torch.logspace(-1, 0.5, 72)
    fit, held = [(torch.relu(mix @ torch.randn(72, 2000)) * scale[:, None]).double() for _ in range(2)]
    codebook, codes = share_weights(weight, mask, bits=3, reserve_zero=True)
    code_map = torch.zeros(weight.shape, dtype=torch.int64)
    code_map[mask] = codes
    mean = fit.mean(dim=1)
    cov = (fit - mean[:, None]) @ (fit - mean[:, None]).t() / fit.shape[1]
    refined = least_squares_codebook(code_map, cov, cov @ weight.t(), codebook, frozen=(0,))
    assert refined[0] == 0.0

    def error(book: torch.Tensor, x: torch.Tensor, bias_fix: bool) -> float:  # output error, bias re-fitted
        delta = weight - book.double()[code_map]
        return float((delta @ (x - mean[:, None] if bias_fix else x)).pow(2).mean())

    kmeans, kmeans_bias, least = error(codebook, held, False), error(codebook, held, True), error(refined, held, True)
    # measured on held-out features: 4.18 (k-means), 3.28 (+ bias correction), 3.13 (least squares)
    assert least < 0.8 * kmeans and least < 0.98 * kmeans_bias, (kmeans, kmeans_bias, least)
    fitted = error(refined, fit, True)
    for k in range(1, 8):  # the least-squares optimum: moving any centroid raises the fitted error
        for step in (-1e-3, 1e-3):
            moved = refined.clone()
            moved[k] += step
            assert error(moved, fit, True) > fitted


def _tiny_checkpoint(tmp_path):
    from squeezelab.weights.checkpoint import save_checkpoint

    state, meta = _small_model()
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, state, meta)
    return path


def test_refine_and_finetune_bring_the_compressed_model_closer_to_its_parent(skimage_photo_dir):
    from squeezelab.compress.biascorr import distil_codebooks, refine_codebooks

    state, meta = _small_model()
    images = folder_images(skimage_photo_dir).batches(meta.preprocess).tensors()
    crops = torch.cat([images, images.flip(3), images.flip(2)])  # 12 calibration inputs
    held = torch.cat([images.transpose(2, 3), images.roll(17, dims=3)])
    parent = model_from_state(state, meta)

    def error(cm) -> float:
        child = model_from_state(cm.state_dict(), meta)
        with torch.no_grad():
            return float((child(held) - parent(held)).pow(2).mean())

    cm = compress_state_dict(state, bits=3, density=0.5)
    kmeans = error(cm)
    refine_codebooks(cm, state, meta, crops)
    refined = error(cm)
    assert refined < 0.5 * kmeans, (kmeans, refined)  # measured: 0.0317 -> 0.0068
    assert all(t.codebook[0] == 0.0 for t in cm.shared.values() if t.layout == "sparse")
    masks = {k: t.decode() != 0 for k, t in cm.shared.items()}
    steps = distil_codebooks(cm, state, meta, crops, torch.full((len(crops),), -1), epochs=3, batch_size=4, lr=1.0)
    assert steps == 9
    assert all(torch.equal(t.decode() != 0, masks[k]) for k, t in cm.shared.items())  # masks held
    assert error(cm) < refined  # measured: 0.00678 -> 0.00673 on the held-out inputs


def test_compress_cli_calibration_finetune_and_fidelity(tmp_path, skimage_photo_dir, capsys):
    import json

    path = _tiny_checkpoint(tmp_path)
    out = tmp_path / "tiny.sqz"
    code = main(["compress", "squeezenet1_1", "--weights", str(path), "-o", str(out), "--bits", "4",
                 "--density", "0.5", "--calibration", str(skimage_photo_dir), "--finetune", str(skimage_photo_dir),
                 "--finetune-epochs", "1", "--fidelity", str(skimage_photo_dir), "--json", str(tmp_path / "r.json")])
    assert code == 0
    text = capsys.readouterr().out
    assert "least-squares calibration on 4 images" in text and "fine-tuned on 4 images" in text
    fidelity = json.loads((tmp_path / "r.json").read_text())["fidelity"]
    assert list(fidelity) == ["k-means", "least-squares", "fine-tuned"]
    assert all(f["n"] == 4 for f in fidelity.values())
    assert fidelity["least-squares"]["mean_kl"] < fidelity["k-means"]["mean_kl"]
    # the last stage is the written file: its agreement and KL, recomputed here from the two models' logits
    parent, decoded = build_model(path), build_model(out)
    images = folder_images(skimage_photo_dir).batches(parent.pretrained_cfg.preprocess).tensors()
    with torch.no_grad():
        parent_logits, child_logits = parent.eval()(images), decoded.eval()(images)
    agreement = 100.0 * float((parent_logits.argmax(1) == child_logits.argmax(1)).float().mean())
    kl = torch.nn.functional.kl_div(child_logits.log_softmax(1), parent_logits.log_softmax(1), log_target=True,
                                    reduction="batchmean")
    assert fidelity["fine-tuned"]["agreement"] == pytest.approx(agreement)
    assert fidelity["fine-tuned"]["mean_kl"] == pytest.approx(float(kl), rel=1e-4, abs=1e-7)
    assert main(["compress", "squeezenet1_1", "--weights", str(path), "-o", str(tmp_path / "x.sqz"),
                 "--finetune", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_compress_calibrates_by_default_and_says_why_not(tmp_path, capsys):
    """No ``--calibration``: the scikit-image photos calibrate (one-line note), and the 4-bit codebooks fit the
    parent's outputs on those photos better than ``--calibration none``; weights without preprocessing get a note
    and no calibration."""
    from squeezelab.compress.measure import skimage_photos
    from squeezelab.data.sources import pil_images
    from squeezelab.weights.checkpoint import save_checkpoint

    path = _tiny_checkpoint(tmp_path)
    args = ["compress", "squeezenet1_1", "--weights", str(path), "--bits", "4", "--density", "0.5"]
    assert main([*args, "-o", str(tmp_path / "default.sqz")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "calibrated on the 6 scikit-image photos (--calibration DIR for your own images)"
    assert "least-squares calibration on 6 images" in out
    assert main([*args, "-o", str(tmp_path / "none.sqz"), "--calibration", "none"]) == 0
    assert "calibration on" not in capsys.readouterr().out
    parent = build_model(path)
    x = pil_images(skimage_photos()).batches(parent.pretrained_cfg.preprocess).tensors()
    with torch.no_grad():
        errors = {name: float((build_model(tmp_path / f"{name}.sqz")(x) - parent(x)).pow(2).mean())
                  for name in ("default", "none")}
    assert errors["default"] < errors["none"], errors
    state, meta = _small_model()
    meta.preprocess = None
    save_checkpoint(tmp_path / "raw.safetensors", state, meta)
    assert main([*args, "--weights", str(tmp_path / "raw.safetensors"), "-o", str(tmp_path / "raw.sqz")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("no calibration: ") and "calibration on" not in out


def test_compress_cli_finetunes_on_cifar10_training_images(tmp_path, cifar10_zips, capsys):
    """``--finetune cifar10:DIR`` distils on the training zip's images (evenly spaced), never the test zip's."""
    import json

    path = _tiny_checkpoint(tmp_path)
    code = main(["compress", "squeezenet1_1", "--weights", str(path), "-o", str(tmp_path / "c.sqz"), "--bits", "4",
                 "--finetune", f"cifar10:{cifar10_zips}", "--finetune-limit", "6", "--finetune-epochs", "1",
                 "--json", str(tmp_path / "r.json")])
    assert code == 0
    assert "fine-tuned on 6 images" in capsys.readouterr().out
    fidelity = json.loads((tmp_path / "r.json").read_text())["fidelity"]
    assert fidelity["fine-tuned"]["n"] == 6  # measured on the fine-tuning images, as no --fidelity was given
    assert main(["compress", "squeezenet1_1", "--weights", str(path), "-o", str(tmp_path / "x.sqz"),
                 "--finetune", f"cifar10:{tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "cifar10_train_jpeg.zip" in err and len(err.strip().splitlines()) == 1


def test_fidelity_compare_agreement_kl_and_labelled_top1():
    from squeezelab.compress.fidelity import compare

    parent = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [1.0, 0.0, 0.0]])
    child = parent.clone()
    child[3] = torch.tensor([0.0, 1.0, 0.0])
    fid = compare(parent, child, torch.tensor([0, 1, -1, 1]))
    assert fid.agreement == 75.0 and fid.n == 4 and fid.labelled == 3
    assert fid.top1_parent == pytest.approx(200 / 3) and fid.top1_child == 100.0
    p = torch.softmax(parent[3], 0)
    assert fid.mean_kl == pytest.approx(float((p * (p.log() - torch.log_softmax(child[3], 0))).sum()) / 4)
    assert compare(parent, parent).mean_kl == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(SqueezelabError):
        compare(parent, parent[:2])


def test_6_bit_least_squares_sharing_keeps_agreement_on_a_fixed_image_set(cifar10_zips, skimage_photo_dir):
    from squeezelab.compress.fidelity import collect_logits, compare
    from squeezelab.data.sources import cifar10_split

    state, meta = load_weights("squeezenet1_1.torchvision")  # dense, so all 64 entries are centroids
    calibration = cifar10_split(cifar10_zips, "train").subset(16).decoded()  # train split: disjoint from eval
    images = (cifar10_split(cifar10_zips, "test").subset(200).unlabelled()
              + folder_images(skimage_photo_dir)).batches(meta.preprocess)
    models = {}
    for name, calib in (("uncompressed", None), ("k-means", None), ("least-squares", calibration)):
        weights = state if name == "uncompressed" else compress_model(state, meta, bits=6,
                                                                      calibration=calib).compressed.state_dict()
        models[name] = model_from_state(weights, meta)
    logits, labels = collect_logits(models, images)
    kmeans = compare(logits["uncompressed"], logits["k-means"], labels)
    least = compare(logits["uncompressed"], logits["least-squares"], labels)
    print(f"6-bit agreement on {least.n} images: k-means {kmeans.agreement:.1f}%, least squares {least.agreement:.1f}%")
    assert least.n == 204
    assert least.agreement >= AGREEMENT_6BIT and least.agreement >= kmeans.agreement + 10
    assert least.mean_kl < kmeans.mean_kl
