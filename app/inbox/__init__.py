"""The doctor's inbox: Mes documents (the list, the viewer, the content, the ZIP, "pas mon
patient") and Mes patients. Queries, audited actions, forms and views each have their module;
what a doctor may see is ``Delivery.visible_to`` and which consent counts is ``Consent.active``.
"""
