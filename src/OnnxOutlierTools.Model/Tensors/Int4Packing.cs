namespace OnnxOutlierTools.Tensors;

/// <summary>ONNX packs INT4/UINT4 two per byte, element 0 in the low nibble; an odd count leaves the
/// last high nibble zero.</summary>
public static class Int4Packing
{
    public static long PackedLength(long count) => (count + 1) / 2;

    public static void UnpackSigned(ReadOnlySpan<byte> packed, Span<sbyte> destination)
    {
        CheckLength(packed.Length, destination.Length);
        for (int i = 0; i < destination.Length; i++)
        {
            int nibble = (packed[i >> 1] >> ((i & 1) * 4)) & 0xF;
            destination[i] = (sbyte)((nibble ^ 8) - 8); // sign-extend 4 bits
        }
    }

    public static void UnpackUnsigned(ReadOnlySpan<byte> packed, Span<byte> destination)
    {
        CheckLength(packed.Length, destination.Length);
        for (int i = 0; i < destination.Length; i++)
            destination[i] = (byte)((packed[i >> 1] >> ((i & 1) * 4)) & 0xF);
    }

    /// <summary>Packs values already in range (-8..7); out-of-range values are an error, not wrapped.</summary>
    public static void PackSigned(ReadOnlySpan<sbyte> values, Span<byte> packed)
    {
        CheckLength(packed.Length, values.Length);
        packed.Slice(0, (int)PackedLength(values.Length)).Clear();
        for (int i = 0; i < values.Length; i++)
        {
            int v = values[i];
            if (v is < -8 or > 7) throw new ArgumentOutOfRangeException(nameof(values), $"Value {v} at index {i} is outside the INT4 range -8..7.");
            packed[i >> 1] |= (byte)((v & 0xF) << ((i & 1) * 4));
        }
    }

    public static void PackUnsigned(ReadOnlySpan<byte> values, Span<byte> packed)
    {
        CheckLength(packed.Length, values.Length);
        packed.Slice(0, (int)PackedLength(values.Length)).Clear();
        for (int i = 0; i < values.Length; i++)
        {
            int v = values[i];
            if (v > 15) throw new ArgumentOutOfRangeException(nameof(values), $"Value {v} at index {i} is outside the UINT4 range 0..15.");
            packed[i >> 1] |= (byte)(v << ((i & 1) * 4));
        }
    }

    private static void CheckLength(int packedLength, int count)
    {
        if (packedLength < PackedLength(count))
            throw new ArgumentException($"{count} four-bit values need {PackedLength(count)} bytes, got {packedLength}.");
    }
}
