"""a2x for Maya: the ``a2xInferencePlayer`` node, its commands, menu and panel.

Only :mod:`a2x_maya.maya_api` (the facade) imports ``maya``; every other module here is
plain Python that the tests run without Maya. The node and command classes are built by
:mod:`a2x_maya.plugin` from the facade's base classes.
"""

PLUGIN_NAME = "a2x_maya_plugin"
NODE_TYPE = "a2xInferencePlayer"
#: In-house id block (0x0-0x7FFFF); a public release needs an id block from Autodesk.
NODE_ID = 0x0007A2A0
VENDOR = "a2x developers"
