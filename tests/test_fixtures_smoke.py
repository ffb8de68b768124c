"""The shared fixtures themselves: the tiny model is a real detection checkpoint with our class."""


def test_tiny_model_is_real_detector(tiny_trained_model):
    import torch

    ckpt = torch.load(tiny_trained_model, map_location="cpu", weights_only=False)
    model = ckpt.get("ema") or ckpt["model"]
    assert model.names == {0: "KIDNEY_STONE"}
    assert sum(p.numel() for p in model.parameters()) > 2_000_000  # YOLO11n-sized
