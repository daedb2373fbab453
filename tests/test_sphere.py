import torch

from vizkit.sphere import data_radius, geodesic, project_to_sphere, tangent_project


def test_projection_and_tangent():
    x = torch.randn(4, 3, 5)
    p = project_to_sphere(x, 2.0)
    assert torch.allclose(p.reshape(4, -1).norm(dim=1), torch.full((4,), 2.0))
    v = tangent_project(torch.randn(4, 3, 5), p)
    assert torch.allclose((v * p).sum(dim=(1, 2)), torch.zeros(4), atol=1e-5)


def test_geodesic_stays_on_the_sphere_and_starts_at_x():
    x = project_to_sphere(torch.randn(1, 10), 3.0)[0]
    v = tangent_project(torch.randn(1, 10), x[None])[0]
    path = geodesic(x, v, torch.linspace(-1, 1, 5))
    assert torch.allclose(path.norm(dim=1), torch.full((5,), 3.0), atol=1e-5)
    assert torch.allclose(geodesic(x, v, torch.zeros(1))[0], x)


def test_data_radius():
    class M:
        data_info = {"stats": {"mean_norm": 9.5}}

    assert data_radius(M()) == 9.5 and data_radius(object()) is None
