"""Node parameters: declared with their description and range, set all or none.

`serving.Setting` tables become parameters here, so every node that samples declares the same
ones; `ros2 param describe` shows each description.
"""
from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.parameter import Parameter

from ..serving import Setting

_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}


def declare(node, name: str, default, description: str, *, int_range: tuple[int, int] | None = None,
            float_range: tuple[float, float] | None = None, read_only: bool = False, choices=None):
    """Declare one parameter with its description and range, so `ros2 param describe` explains it."""
    text = description + (f" One of {', '.join(map(repr, choices))}." if choices else "")
    descriptor = ParameterDescriptor(name=name, description=text, read_only=read_only)
    if isinstance(default, Parameter.Type):  # a typed parameter without a value (ROS cannot type an empty list)
        descriptor.type = default.value
    elif isinstance(default, list):
        descriptor.type = ParameterType.PARAMETER_STRING_ARRAY
    else:
        descriptor.type = _TYPES[type(default)]
    if int_range is not None:
        descriptor.integer_range = [IntegerRange(from_value=int_range[0], to_value=int_range[1], step=1)]
    if float_range is not None:
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(float_range[0]),
                                                              to_value=float(float_range[1]), step=0.0)]
    return node.declare_parameter(name, default, descriptor)


def declare_settings(node, settings: tuple[Setting, ...]) -> None:
    """Declare serving.Setting entries as parameters (one table for every node that samples)."""
    for s in settings:
        declare(node, s.name, s.default, s.description, int_range=s.int_range, float_range=s.float_range,
                choices=s.choices, read_only=s.read_only)


def settings_values(node, settings, changes=()) -> dict:
    """The node's current values of `settings` (serving.Setting), with `changes` (Parameters) applied."""
    values = {s.name: node.get_parameter(s.name).value for s in settings}
    values.update({p.name: p.value for p in changes if p.name in values})
    return values


def declare_autostart(node) -> None:
    """The `autostart` parameter of a lifecycle node's own executable (`ros2 run`)."""
    declare(node, "autostart", True, "The node's own executable (ros2 run) configures and activates it at start; "
            "false leaves it unconfigured for a lifecycle manager. The launch file and dualdiff_bringup set it "
            "false and drive the transitions themselves (their autostart argument).", read_only=True)


def all_or_none_parameters(node) -> None:
    """Serve the node's parameter services with SetParameters applied all or none.

    ROS applies a SetParameters request one value at a time, so settings that depend on each
    other (sampler.steps with sampler.fine_steps) could land half. Here the whole request is one
    atomic set: every value is applied, or none, and each result carries the reason. Call it
    from a node created with `start_parameter_services=False`.
    """
    from rcl_interfaces.msg import SetParametersResult
    from rclpy.exceptions import ParameterNotDeclaredException
    from rclpy.parameter_service import ParameterService

    class AllOrNone(ParameterService):
        def _set_parameters_callback(self, request, response):
            params = [Parameter.from_parameter_msg(p) for p in request.parameters]
            try:
                result = self._get_node().set_parameters_atomically(params)
            except ParameterNotDeclaredException as err:
                result = SetParametersResult(successful=False, reason=str(err))
            response.results = [result for _ in params]
            return response

    node._parameter_service = AllOrNone(node)
