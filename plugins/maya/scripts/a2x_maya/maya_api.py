"""The one module that talks to Maya (``maya.cmds`` and the Python API 2.0).

Everything else in :mod:`a2x_maya` takes a :class:`MayaScene` (or the tests' hand-written
fake of it) and stays plain Python. Methods are one Maya concern each; names are node and
plug names as strings (``"blendShape1.weight[3]"``), times are seconds or scene frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import maya.api.OpenMaya as om
import maya.api.OpenMayaAnim as oma
from maya import cmds, mel

from . import attributes as A
from .connect import Link, parse_alias_list
from .timeunits import fps_of_rate
from .track import FrameValues

_CLOCK_UNITS = (om.MTime.kHours, om.MTime.kMinutes, om.MTime.kSeconds, om.MTime.kMilliseconds)
_MAIN_PROGRESS = "$gMainProgressBar"
_MENU = "a2xMainMenu"


def _plug(name: str) -> om.MPlug:
    selection = om.MSelectionList()
    selection.add(name)
    return selection.getPlug(0)


def _node(name: str) -> om.MObject:
    selection = om.MSelectionList()
    selection.add(name)
    return selection.getDependNode(0)


class Edit:
    """One undoable edit: MDGModifier steps and anim-curve changes, undone in reverse.

    Operations queue on the current modifier; :meth:`create_node` and :meth:`key_curve`
    flush it first, since later steps need the node's name or the disconnected plug.
    """

    def __init__(self) -> None:
        self._steps: list[Any] = []
        self._modifier = om.MDGModifier()
        self._pending = False

    def _flush(self) -> None:
        if self._pending:
            self._modifier.doIt()
            self._steps.append(self._modifier)
            self._modifier = om.MDGModifier()
            self._pending = False

    def create_node(self, node_type: str, name: str) -> str:
        """Create a DG node; returns its actual (unique) name."""
        obj = self._modifier.createNode(node_type)
        self._modifier.renameNode(obj, name)
        self._pending = True
        self._flush()
        return om.MFnDependencyNode(obj).name()

    def connect(self, source: str, dest: str, force: bool = False) -> None:
        """Connect two plugs; ``force`` first breaks the destination's input."""
        dest_plug = _plug(dest)
        if dest_plug.isDestination:
            if not force:
                return
            self._modifier.disconnect(dest_plug.source(), dest_plug)
        self._modifier.connect(_plug(source), dest_plug)
        self._pending = True

    def disconnect(self, source: str, dest: str) -> None:
        self._modifier.disconnect(_plug(source), _plug(dest))
        self._pending = True

    def mel(self, command: str) -> None:
        """A MEL command that undoes with the edit (``aliasAttr``, ``setAttr``)."""
        self._modifier.commandToExecute(command)
        self._pending = True

    def set_attr(self, plug: str, value: float | str) -> None:
        if isinstance(value, str):
            self.mel(f'setAttr -type "string" {plug} "{_mel_string(value)}"')
        else:
            self.mel(f"setAttr {plug} {float(value)!r}")

    def add_attr(self, node: str, name: str, minimum: float, maximum: float) -> None:
        """Add a keyable double attribute ``name`` (long = short name) to ``node``, unless
        it has one already."""
        if cmds.attributeQuery(name, node=node, exists=True):
            return
        self._flush()
        numeric = om.MFnNumericAttribute()
        attr = numeric.create(name, name, om.MFnNumericData.kDouble, 0.0)
        numeric.setMin(minimum)
        numeric.setMax(maximum)
        numeric.keyable, numeric.storable = True, True
        self._modifier.addAttribute(_node(node), attr)
        self._pending = True
        self._flush()

    def key_curve(self, plug: str, frames: Sequence[float], values: Sequence[float]) -> None:
        """A new time->unitless anim curve on ``plug`` with all keys at once (addKeys); an
        anim curve already keying ``plug`` (an earlier bake) is deleted first."""
        self._flush()
        target = _plug(plug)
        if target.isDestination and target.source().node().hasFn(om.MFn.kAnimCurve):
            remove = om.MDGModifier()
            remove.deleteNode(target.source().node())
            remove.doIt()
            self._steps.append(remove)
            target = _plug(plug)
        modifier = om.MDGModifier()
        change = oma.MAnimCurveChange()
        curve = oma.MFnAnimCurve()
        curve.create(target, oma.MFnAnimCurve.kAnimCurveTU, modifier)
        if not target.isDestination:  # the create queued on the modifier instead of doing it
            modifier.doIt()
        unit = om.MTime.uiUnit()
        times = om.MTimeArray([om.MTime(float(f), unit) for f in frames])
        curve.addKeys(
            times,
            om.MDoubleArray([float(v) for v in values]),
            oma.MFnAnimCurve.kTangentAuto,
            oma.MFnAnimCurve.kTangentAuto,
            False,
            change,
        )
        self._steps.append(_CurveStep(modifier, change))

    def delete_node(self, name: str) -> None:
        self._modifier.deleteNode(_node(name))
        self._pending = True

    def do_it(self) -> None:
        self._flush()

    def undo_it(self) -> None:
        for step in reversed(self._steps):
            step.undoIt()

    def redo_it(self) -> None:
        for step in self._steps:
            step.doIt() if isinstance(step, om.MDGModifier) else step.redoIt()


class _CurveStep:
    def __init__(self, modifier: om.MDGModifier, change: Any) -> None:
        self.modifier, self.change = modifier, change

    def undoIt(self) -> None:  # noqa: N802 - Maya's naming
        self.change.undoIt()
        self.modifier.undoIt()

    def redoIt(self) -> None:  # noqa: N802
        self.modifier.doIt()
        self.change.redoIt()


def _angle3(name: str, short: str) -> om.MObject:
    """A read-only double3 of angles (``nameX/Y/Z``), connectable to ``rotate``."""
    unit = om.MFnUnitAttribute()
    children = []
    for axis in "XYZ":
        children.append(unit.create(name + axis, short + axis.lower(), om.MFnUnitAttribute.kAngle, 0.0))
        unit.writable, unit.storable = False, False
    try:
        numeric = om.MFnNumericAttribute()
        parent = numeric.create(name, short, *children)
        fn: Any = numeric
    except TypeError:  # Python API without the (name, short, child1, child2, child3) form
        fn = om.MFnCompoundAttribute()
        parent = fn.create(name, short)
        for child in children:
            fn.addChild(child)
    fn.writable, fn.storable = False, False
    return parent


def _mel_string(text: str) -> str:
    return text.replace("\\", "/").replace('"', '\\"')


class MayaScene:
    """The facade: every scene query, edit and message the plug-in needs."""

    MPxNode = om.MPxNode
    MPxCommand = om.MPxCommand
    MTypeId = om.MTypeId

    # -- plug-in registration ------------------------------------------------------------
    def plugin(self, mobject: Any, vendor: str, version: str) -> Any:
        return om.MFnPlugin(mobject, vendor, version)

    def make_syntax(self, spec: Any) -> om.MSyntax:
        """MSyntax from a :class:`~a2x_maya.commands.CommandSpec`; objects are node names."""
        syntax = om.MSyntax()
        for short, long, kind in spec.flags:
            if kind == "bool":
                syntax.addFlag(short, long)
            else:
                syntax.addFlag(short, long, om.MSyntax.kString)
        syntax.setObjectType(om.MSyntax.kStringObjects, 0)
        return syntax

    def parse_args(self, spec: Any, args: Any) -> tuple[dict[str, Any], list[str]]:
        """Flags by long name (without the dash) and the object names; the selection when
        no object is given."""
        database = om.MArgDatabase(self.make_syntax(spec), args)
        flags: dict[str, Any] = {}
        for short, long, kind in spec.flags:
            if database.isFlagSet(short):
                flags[long.lstrip("-")] = True if kind == "bool" else database.flagArgumentString(short, 0)
        objects = list(database.getObjectStrings()) or self.selection()
        return flags, objects

    def set_command_result(self, command: Any, value: Any) -> None:
        if isinstance(value, list | tuple):
            command.setResult([str(v) for v in value])
        elif value is not None:
            command.setResult(str(value))

    # -- node definition and compute ---------------------------------------------------
    def define_player_attributes(self, node_class: Any) -> dict[str, Any]:
        """Create and add every attribute of the player node; returns name -> MObject."""
        attrs: dict[str, Any] = {}
        numeric, typed, unit = om.MFnNumericAttribute(), om.MFnTypedAttribute(), om.MFnUnitAttribute()
        for name, short, kind, default in A.SOURCE_ATTRS:
            if kind == "time":
                attrs[name] = unit.create(name, short, om.MTime(float(default), om.MTime.kSeconds))
                fn: Any = unit
            else:
                data = om.MFnStringData().create(str(default))
                attrs[name] = typed.create(name, short, om.MFnData.kString, data)
                fn = typed
                fn.usedAsFilename = name in ("audioFile", "modelPath", "emotionModelPath")
            fn.storable, fn.keyable = True, False
        enum = om.MFnEnumAttribute()
        for spec in A.PARAMETER_ATTRS + A.EMOTION_ATTRS:
            if spec.kind == "enum":
                attrs[spec.name] = enum.create(spec.name, spec.short, int(spec.default))
                for index, choice in enumerate(spec.choices):
                    enum.addField(choice, index)
                enum.storable, enum.keyable, enum.channelBox = True, spec.keyable, True
                continue
            kind = {"float": om.MFnNumericData.kFloat, "int": om.MFnNumericData.kInt,
                    "bool": om.MFnNumericData.kBoolean}[spec.kind]  # fmt: skip
            default = int(spec.default) if spec.kind == "int" else spec.default
            attrs[spec.name] = numeric.create(spec.name, spec.short, kind, default)
            for setter, value in ((numeric.setMin, spec.min), (numeric.setMax, spec.max),
                                  (numeric.setSoftMin, spec.soft_min),
                                  (numeric.setSoftMax, spec.soft_max)):  # fmt: skip
                if value is not None and spec.kind != "bool":
                    setter(int(value) if spec.kind == "int" else value)
            numeric.storable, numeric.keyable = True, spec.keyable
            numeric.channelBox = not spec.keyable
        for array in A.INPUT_ARRAYS:
            attrs[array.name] = numeric.create(array.name, array.short, om.MFnNumericData.kFloat, array.default)
            numeric.array, numeric.usesArrayDataBuilder = True, True
            numeric.storable, numeric.keyable = True, array.keyable
            if array.min is not None:
                numeric.setMin(array.min)
            if array.soft_max is not None:
                numeric.setSoftMax(array.soft_max)
        for array in A.OUTPUT_ARRAYS:
            attrs[array.name] = numeric.create(array.name, array.short, om.MFnNumericData.kFloat, 0.0)
            numeric.array, numeric.usesArrayDataBuilder = True, True
            numeric.writable, numeric.storable = False, False
        matrix = om.MFnMatrixAttribute()
        attrs[A.JAW_TRANSFORM[0]] = matrix.create(*A.JAW_TRANSFORM, om.MFnMatrixAttribute.kDouble)
        matrix.writable, matrix.storable = False, False
        for name, short in A.EYE_ROTATIONS:
            attrs[name] = _angle3(name, short)
        attrs[A.PROGRESS[0]] = numeric.create(*A.PROGRESS, om.MFnNumericData.kFloat, 0.0)
        numeric.writable, numeric.storable, numeric.hidden = False, False, True
        outputs = [attrs[a.name] for a in A.OUTPUT_ARRAYS]
        outputs += [attrs[A.JAW_TRANSFORM[0]], attrs[A.PROGRESS[0]]]
        outputs += [attrs[n] for n, _ in A.EYE_ROTATIONS]
        for obj in attrs.values():
            node_class.addAttribute(obj)
        for obj in attrs.values():
            if obj in outputs:
                continue
            for out in outputs:
                node_class.attributeAffects(obj, out)
        return attrs

    def is_output_plug(self, plug: Any, attrs: Mapping[str, Any]) -> bool:
        """True when ``plug`` (or its array/compound parent) is one of the node's outputs."""
        names = [a.name for a in A.OUTPUT_ARRAYS] + [A.JAW_TRANSFORM[0], A.PROGRESS[0]]
        names += [n for n, _ in A.EYE_ROTATIONS]
        if plug.isElement:
            plug = plug.array()
        if plug.isChild:
            plug = plug.parent()
        return any(plug.attribute() == attrs[n] for n in names)

    def read_inputs(self, block: Any, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """Every input value from the data block; times in seconds, arrays sparse dicts."""
        values: dict[str, Any] = {}
        for name, _short, kind, _default in A.SOURCE_ATTRS:
            handle = block.inputValue(attrs[name])
            if kind == "time":
                values[name] = handle.asTime().asUnits(om.MTime.kSeconds)
            else:
                values[name] = handle.asString()
        getters = {"bool": "asBool", "int": "asInt", "enum": "asShort", "float": "asFloat"}
        for spec in A.PARAMETER_ATTRS + A.EMOTION_ATTRS:
            handle = block.inputValue(attrs[spec.name])
            values[spec.name] = float(getattr(handle, getters[spec.kind])())
        for array in A.INPUT_ARRAYS:
            handle = block.inputArrayValue(attrs[array.name])
            sparse: dict[int, float] = {}
            for position in range(len(handle)):
                handle.jumpToPhysicalElement(position)
                sparse[handle.elementLogicalIndex()] = handle.inputValue().asFloat()
            values[array.name] = sparse
        return values

    def write_outputs(self, block: Any, attrs: Mapping[str, Any], frame: FrameValues,
                      progress: float) -> None:  # fmt: skip
        """Write one frame of outputs and mark them clean."""
        for array, data in ((A.OUTPUT_WEIGHTS, frame.weights), (A.OUTPUT_EMOTIONS, frame.emotions),
                            (A.OUTPUT_DETECTED_EMOTIONS, frame.detected)):  # fmt: skip
            handle = block.outputArrayValue(attrs[array.name])
            builder = handle.builder()
            for index, value in enumerate(data):
                builder.addElement(index).setFloat(float(value))
            handle.set(builder)
            handle.setAllClean()
        jaw = block.outputValue(attrs[A.JAW_TRANSFORM[0]])
        jaw.setMMatrix(om.MMatrix(list(frame.jaw)))
        jaw.setClean()
        for (name, _short), degrees in zip(A.EYE_ROTATIONS, (frame.right_eye, frame.left_eye), strict=True):
            handle = block.outputValue(attrs[name])
            handle.set3Double(*(math.radians(v) for v in degrees))
            handle.setClean()
        handle = block.outputValue(attrs[A.PROGRESS[0]])
        handle.setFloat(float(progress))
        handle.setClean()

    def scene_fps(self) -> Fraction | None:
        """The scene's exact frame rate, or None for a clock unit (safe inside compute)."""
        unit = om.MTime.uiUnit()
        if unit in _CLOCK_UNITS:
            return None
        return fps_of_rate(om.MTime(1.0, om.MTime.kSeconds).asUnits(unit))

    def is_interactive(self) -> bool:
        return om.MGlobal.mayaState() == om.MGlobal.kInteractive

    def node_name(self, user_node: Any) -> str:
        """Name of a plug-in node instance (``MPxNode``)."""
        return om.MFnDependencyNode(user_node.thisMObject()).name()

    def user_node(self, name: str) -> Any:
        """The Python ``MPxNode`` instance behind a node name."""
        return om.MFnDependencyNode(_node(name)).userNode()

    # -- scene queries -------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        return bool(cmds.objExists(name))

    def node_type(self, name: str) -> str:
        return str(cmds.nodeType(name))

    def selection(self) -> list[str]:
        return list(cmds.ls(selection=True) or [])

    def nodes_of_type(self, node_type: str) -> list[str]:
        return list(cmds.ls(type=node_type) or [])

    def blendshapes_of(self, name: str) -> list[str]:
        """``name`` itself if it is a blendShape, else the blendShapes in its history."""
        if cmds.nodeType(name) == "blendShape":
            return [name]
        history = cmds.listHistory(name, pruneDagObjects=True) or []
        return list(cmds.ls(history, type="blendShape") or [])

    def weight_aliases(self, blendshape: str) -> dict[int, str]:
        return parse_alias_list(cmds.aliasAttr(blendshape, query=True))

    def connected_inputs(self, plugs: Sequence[str]) -> list[str]:
        """The plugs among ``plugs`` that already have an incoming connection."""
        return [p for p in plugs if cmds.listConnections(p, source=True, destination=False)]

    def player_links(self, player: str) -> list[Link]:
        """The player's ``outputWeights[i] -> blendShape.weight[j]`` connections."""
        pairs = cmds.listConnections(
            f"{player}.{A.OUTPUT_WEIGHTS.name}", source=False, destination=True,
            plugs=True, connections=True,
        ) or []  # fmt: skip
        links = []
        for source, dest in zip(pairs[0::2], pairs[1::2], strict=False):
            src_index = int(source.rsplit("[", 1)[1].rstrip("]"))
            node, attr = dest.split(".", 1)
            if not attr.startswith("weight[") or cmds.nodeType(node) != "blendShape":
                continue
            index = int(attr[len("weight["):-1])
            name = self.weight_aliases(node).get(index, attr)
            links.append(Link(node, index, name, A.OUTPUT_POSES[src_index]))
        return links

    def player_values(self, player: str) -> dict[str, Any]:
        """The player's inputs via getAttr (same shape as :meth:`read_inputs`)."""
        values: dict[str, Any] = {}
        for name, _short, kind, _default in A.SOURCE_ATTRS:
            if kind == "time":
                values[name] = _plug(f"{player}.{name}").asMTime().asUnits(om.MTime.kSeconds)
            else:
                values[name] = cmds.getAttr(f"{player}.{name}") or ""
        for spec in A.PARAMETER_ATTRS + A.EMOTION_ATTRS:
            values[spec.name] = float(cmds.getAttr(f"{player}.{spec.name}"))
        for array in A.INPUT_ARRAYS:
            indices = cmds.getAttr(f"{player}.{array.name}", multiIndices=True) or []
            values[array.name] = {i: cmds.getAttr(f"{player}.{array.name}[{i}]") for i in indices}
        return values

    def plug_samples(self, plug: str, frames: Sequence[float]) -> float | list[float]:
        """The plug's value at each frame when animated or driven, else one constant."""
        if not cmds.objExists(plug):
            return float("nan")
        if cmds.listConnections(plug, source=True, destination=False):
            return [float(cmds.getAttr(plug, time=f)) for f in frames]
        return float(cmds.getAttr(plug))

    def time_slider_sound(self) -> str | None:
        """The audio node on the time slider (interactive sessions only)."""
        if not self.is_interactive():
            return None
        slider = mel.eval(f"$tmp = {'$gPlayBackSlider'}")
        return cmds.timeControl(slider, query=True, sound=True) or None

    def create_sound(self, path: str, offset_frame: float = 0.0) -> str:
        """An audio node for ``path`` (undoable by Maya's own undo)."""
        return str(cmds.sound(file=path, offset=offset_frame))

    def set_time_slider_sound(self, sound: str) -> None:
        if self.is_interactive():
            slider = mel.eval("$tmp = $gPlayBackSlider")
            cmds.timeControl(slider, edit=True, sound=sound, displaySound=True)

    # -- edits ---------------------------------------------------------------------------
    def begin_edit(self) -> Edit:
        return Edit()

    def dirty(self, plug: str) -> None:
        """Mark a plug dirty so that Maya evaluates it again."""
        cmds.dgdirty(plug)

    # -- feedback ------------------------------------------------------------------------
    def info(self, message: str) -> None:
        om.MGlobal.displayInfo(message)

    def warn(self, message: str) -> None:
        om.MGlobal.displayWarning(message)

    def error(self, message: str) -> None:
        om.MGlobal.displayError(message)

    def progress_begin(self, status: str) -> None:
        if self.is_interactive():
            bar = mel.eval(f"$tmp = {_MAIN_PROGRESS}")
            cmds.progressBar(bar, edit=True, beginProgress=True, isInterruptable=True,
                             status=status, maxValue=100)  # fmt: skip

    def progress_update(self, fraction: float, status: str) -> bool:
        """Show progress; False when the user pressed Esc."""
        if not self.is_interactive():
            return True
        bar = mel.eval(f"$tmp = {_MAIN_PROGRESS}")
        if cmds.progressBar(bar, query=True, isCancelled=True):
            return False
        cmds.progressBar(bar, edit=True, progress=int(fraction * 100), status=status)
        return True

    def progress_end(self) -> None:
        if self.is_interactive():
            bar = mel.eval(f"$tmp = {_MAIN_PROGRESS}")
            cmds.progressBar(bar, edit=True, endProgress=True)

    def start_timer(self, callback: Callable[[], None], interval_s: float = 0.2) -> Any:
        """Call ``callback`` on the main thread every ``interval_s`` (interactive only)."""
        if not self.is_interactive():
            return None
        from .qt import QtCore

        timer = QtCore.QTimer()
        timer.setInterval(int(interval_s * 1000))
        timer.timeout.connect(callback)
        timer.start()
        return timer

    def stop_timer(self, timer: Any) -> None:
        if timer is not None:
            timer.stop()

    def build_menu(self, items: Sequence[tuple[str, str]]) -> None:
        """Top-level "a2x" menu: (label, MEL or ``python:`` command); "" label = divider."""
        if not self.is_interactive():
            return
        self.delete_menu()
        parent = mel.eval("$tmp = $gMainWindow")
        cmds.menu(_MENU, label="a2x", parent=parent, tearOff=True)
        for label, command in items:
            if not label:
                cmds.menuItem(divider=True, parent=_MENU)
            elif command.startswith("python:"):
                cmds.menuItem(label=label, parent=_MENU, command=command[7:], sourceType="python")
            else:
                cmds.menuItem(label=label, parent=_MENU, command=command, sourceType="mel")

    def delete_menu(self) -> None:
        if self.is_interactive() and cmds.menu(_MENU, exists=True):
            cmds.deleteUI(_MENU)

    def main_window_pointer(self) -> int | None:
        """Address of Maya's main window, for parenting Qt windows."""
        import maya.OpenMayaUI as omui

        pointer = omui.MQtUtil.mainWindow()
        return int(pointer) if pointer is not None else None

    def execute(self, command: str) -> Any:
        """Run a MEL command (the plug-in's own commands) and return its result."""
        return mel.eval(command)
