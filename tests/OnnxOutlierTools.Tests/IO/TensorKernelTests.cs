using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.IO;

/// <summary>fp16 / bf16 conversions against scalar references, and INT4 packing.</summary>
public class TensorKernelTests
{
    private static float[] Samples()
    {
        var rng = new Random(11);
        var values = Enumerable.Range(0, 1000).Select(_ => (float)((rng.NextDouble() - 0.5) * Math.Pow(10, rng.Next(-8, 8)))).ToList();
        values.AddRange([0f, -0f, 1f, -1f, float.MaxValue, float.MinValue, float.Epsilon, float.PositiveInfinity, float.NegativeInfinity, 65504f, 70000f, 1e-8f]);
        return values.ToArray();
    }

    [Fact]
    public void BFloat16_Narrowing_MatchesScalarRoundToNearestEven()
    {
        float[] source = Samples();
        var vectorized = new BFloat16[source.Length];
        FloatConversion.ToBFloat16(source, vectorized);
        for (int i = 0; i < source.Length; i++)
        {
            // Reference in double: the nearest bf16 (ties to even) of the float.
            uint bits = BitConverter.SingleToUInt32Bits(source[i]);
            uint lower = bits & 0xFFFF, upper = bits >> 16;
            uint expected = lower > 0x8000 || lower == 0x8000 && (upper & 1) == 1 ? upper + 1 : upper;
            Assert.True(expected == vectorized[i].Bits, $"{source[i]:R}: expected 0x{expected:X4}, got 0x{vectorized[i].Bits:X4}");
        }
    }

    [Fact]
    public void BFloat16_TiesRoundToEven_AndNaNStaysNaN()
    {
        float[] source = [BitConverter.UInt32BitsToSingle(0x3F808000), BitConverter.UInt32BitsToSingle(0x3F818000), float.NaN, BitConverter.UInt32BitsToSingle(0x7F800001)];
        var result = new BFloat16[source.Length];
        FloatConversion.ToBFloat16(source, result);
        Assert.Equal(0x3F80, result[0].Bits); // tie, even stays
        Assert.Equal(0x3F82, result[1].Bits); // tie, odd rounds up
        Assert.True(float.IsNaN((float)result[2]));
        Assert.True(float.IsNaN((float)result[3])); // a NaN whose payload would round to infinity
    }

    [Fact]
    public void BFloat16_Widening_IsExact()
    {
        var all = Enumerable.Range(0, 65536).Select(i => new BFloat16((ushort)i)).ToArray();
        var widened = new float[all.Length];
        FloatConversion.ToSingle(all, widened);
        for (int i = 0; i < all.Length; i++) Assert.Equal((uint)i << 16, BitConverter.SingleToUInt32Bits(widened[i]));
    }

    [Fact]
    public void Float16_RoundTrip_MatchesHalfCasts()
    {
        float[] source = Samples();
        var halves = new Half[source.Length];
        FloatConversion.ToHalf(source, halves);
        var back = new float[source.Length];
        FloatConversion.ToSingle(halves, back);
        for (int i = 0; i < source.Length; i++)
        {
            Assert.Equal((Half)source[i], halves[i]);
            Assert.Equal((float)(Half)source[i], back[i]);
        }
    }

    [Fact]
    public void Int4_PackUnpack_RoundTripsOddCounts_AndRejectsOutOfRange()
    {
        sbyte[] signed = [-8, -1, 0, 7, 3, -5, 1];
        var packed = new byte[Int4Packing.PackedLength(signed.Length)];
        Int4Packing.PackSigned(signed, packed);
        Assert.Equal(0xF8, packed[0]); // element 0 (-8 = 0x8) low nibble, element 1 (-1 = 0xF) high nibble
        Assert.Equal(0, packed[3] >> 4); // an odd count leaves the last high nibble zero
        var back = new sbyte[signed.Length];
        Int4Packing.UnpackSigned(packed, back);
        Assert.Equal(signed, back);

        byte[] unsigned = [0, 15, 9, 1, 2];
        var packedU = new byte[Int4Packing.PackedLength(unsigned.Length)];
        Int4Packing.PackUnsigned(unsigned, packedU);
        var backU = new byte[unsigned.Length];
        Int4Packing.UnpackUnsigned(packedU, backU);
        Assert.Equal(unsigned, backU);
        Assert.Throws<ArgumentOutOfRangeException>(() => Int4Packing.PackSigned([8], new byte[1]));
    }

    [Fact]
    public void TypedSpans_MatchTheDataType_AndRefuseOthers()
    {
        var t = ArrayTensor.Create<Half>([(Half)1.5f, (Half)(-2f)], 2);
        Assert.Equal((Half)1.5f, t.AsSpan<Half>()[0]);
        Assert.Equal([1.5f, -2f], t.ToSingleArray());
        Assert.Throws<InvalidOperationException>(() => t.AsSpan<float>().ToArray());
        var b = ArrayTensor.Create<BFloat16>([(BFloat16)3f], 1);
        Assert.Equal([3f], b.ToSingleArray());
        var packed = new ArrayTensor(TensorDataType.Int4, [3], new byte[2]);
        Assert.Equal(2, packed.ByteLength);
        Assert.Equal(2, packed.AsSpan<byte>().Length);
    }
}
