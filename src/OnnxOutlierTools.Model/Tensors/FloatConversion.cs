using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace OnnxOutlierTools.Tensors;

/// <summary>Vectorized conversions between float32 and the 16-bit float formats.
/// fp16 uses TensorPrimitives (IEEE round-to-nearest-even, overflow to infinity).
/// bf16 widening is exact; narrowing rounds to nearest even and keeps NaN a NaN
/// (a NaN payload that would round to infinity gets the quiet bit set).</summary>
public static class FloatConversion
{
    public static void ToSingle(ReadOnlySpan<Half> source, Span<float> destination) =>
        TensorPrimitives.ConvertToSingle(source, destination);

    public static void ToHalf(ReadOnlySpan<float> source, Span<Half> destination) =>
        TensorPrimitives.ConvertToHalf(source, destination);

    public static void ToSingle(ReadOnlySpan<BFloat16> source, Span<float> destination)
    {
        CheckLengths(source.Length, destination.Length);
        ReadOnlySpan<ushort> src = MemoryMarshal.Cast<BFloat16, ushort>(source);
        Span<uint> dst = MemoryMarshal.Cast<float, uint>(destination);
        int i = 0;
        if (Vector.IsHardwareAccelerated && src.Length >= Vector<ushort>.Count)
        {
            int step = Vector<ushort>.Count;
            for (; i <= src.Length - step; i += step)
            {
                Vector.Widen(new Vector<ushort>(src.Slice(i)), out Vector<uint> lo, out Vector<uint> hi);
                (lo << 16).CopyTo(dst.Slice(i));
                (hi << 16).CopyTo(dst.Slice(i + Vector<uint>.Count));
            }
        }
        for (; i < src.Length; i++) dst[i] = (uint)src[i] << 16;
    }

    public static void ToBFloat16(ReadOnlySpan<float> source, Span<BFloat16> destination)
    {
        CheckLengths(source.Length, destination.Length);
        ReadOnlySpan<uint> src = MemoryMarshal.Cast<float, uint>(source);
        Span<ushort> dst = MemoryMarshal.Cast<BFloat16, ushort>(destination);
        int i = 0;
        if (Vector.IsHardwareAccelerated && src.Length >= 2 * Vector<uint>.Count)
        {
            int step = 2 * Vector<uint>.Count;
            for (; i <= src.Length - step; i += step)
            {
                var a = RoundToBFloat16(new Vector<uint>(src.Slice(i)));
                var b = RoundToBFloat16(new Vector<uint>(src.Slice(i + Vector<uint>.Count)));
                Vector.Narrow(a, b).CopyTo(dst.Slice(i));
            }
        }
        for (; i < src.Length; i++) dst[i] = ToBFloat16Bits(BitConverter.UInt32BitsToSingle(src[i]));
    }

    public static ushort ToBFloat16Bits(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x0040);
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }

    private static Vector<uint> RoundToBFloat16(Vector<uint> bits)
    {
        var rounded = (bits + new Vector<uint>(0x7FFF) + ((bits >> 16) & Vector<uint>.One)) >> 16;
        // NaN: exponent all ones and a non-zero mantissa. Keep the sign and payload, force the quiet bit.
        var abs = bits & new Vector<uint>(0x7FFFFFFF);
        var isNaN = Vector.GreaterThan(abs, new Vector<uint>(0x7F800000));
        var nan = (bits >> 16) | new Vector<uint>(0x0040);
        return Vector.ConditionalSelect(isNaN, nan, rounded);
    }

    private static void CheckLengths(int source, int destination)
    {
        if (destination < source)
            throw new ArgumentException($"Destination holds {destination} elements but the source has {source}.", nameof(destination));
    }
}
