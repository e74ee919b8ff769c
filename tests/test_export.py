"""The generated code of the big four works with torch.export and torch.compile, and the
compiled or exported model gives the same numbers."""
from __future__ import annotations

import pytest
import torch
from helpers import CORPUS

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

NETS = {
    "vgg16": "vgg16_ilsvrc/VGG_ILSVRC_16_layers_deploy.prototxt",
    "resnet50": "resnet50/ResNet-50-deploy.prototxt",
    "googlenet": "bvlc_googlenet/deploy.prototxt",
    "mobilenet": "mobilenet_v1_shicai/mobilenet_deploy.prototxt",
}


# The conversions are the corpus sweep's (tests/test_convert_corpus.py), made once a session.
@pytest.fixture(scope="module", params=[pytest.param(k, marks=pytest.mark.converts(v)) for k, v in NETS.items()])
def model(request, corpus_conversions):
    conversion = corpus_conversions.get(CORPUS / NETS[request.param])
    x = torch.randn(conversion.graph.inputs[0].shape, generator=torch.Generator().manual_seed(0))
    m = conversion.module()
    with torch.no_grad():
        ref = m(x)
    return m, x, ref


def test_torch_export(model):
    m, x, ref = model
    exported = torch.export.export(m, (x,))
    with torch.no_grad():
        y = exported.module()(x)
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5)


def test_torch_compile(model):
    m, x, ref = model
    torch._dynamo.reset()
    compiled = torch.compile(m, fullgraph=True)
    with torch.no_grad():
        y = compiled(x)
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5)
