"""Dynamic number insertion on websites: a visit's source, bot screening, pool numbers and their holds, pool sizing."""
