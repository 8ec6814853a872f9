"""Pictures of results: the 3D ice ball against the anatomy, the ultrasound-plane slice, time series, animations.

Everything is drawn from the HDF5 result alone, off screen. See :func:`render_result`.
"""

from cryofield.viz.headless import RenderUnavailable
from cryofield.viz.render import Rendered, render_result

__all__ = ["RenderUnavailable", "Rendered", "render_result"]
