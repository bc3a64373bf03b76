using System.Runtime.InteropServices;

namespace OnnxOutlierTools.Tensors;

/// <summary>bfloat16: the upper 16 bits of an IEEE float32. .NET 10 has no such type, so this is a
/// minimal storage type; arithmetic happens after conversion to float (see <see cref="FloatConversion"/>).</summary>
[StructLayout(LayoutKind.Sequential, Size = 2)]
public readonly struct BFloat16 : IEquatable<BFloat16>
{
    public readonly ushort Bits;

    public BFloat16(ushort bits) => Bits = bits;

    /// <summary>Round-to-nearest-even; NaN stays a (quiet) NaN.</summary>
    public static explicit operator BFloat16(float value) => new(FloatConversion.ToBFloat16Bits(value));

    public static explicit operator float(BFloat16 value) => BitConverter.UInt32BitsToSingle((uint)value.Bits << 16);

    public bool Equals(BFloat16 other) => Bits == other.Bits;
    public override bool Equals(object? obj) => obj is BFloat16 b && Equals(b);
    public override int GetHashCode() => Bits;
    public override string ToString() => ((float)this).ToString(System.Globalization.CultureInfo.InvariantCulture);
}
