using OnnxOutlierTools.Quantization.W8A8;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Quantization;

/// <summary>The int8 weight kernel against a float64 reference written here element by element: per output channel
/// s = max |w| / 127 (fp64, then fp32), q = round half to even of w / s (fp64), clamped to [-127, 127]; both layouts, fp32 and
/// fp16 weights, a zero channel, and the lazy tensor's chunked reads equal to its whole read.</summary>
public sealed class PerChannelInt8Tests
{
    [Theory]
    [InlineData(1, TensorDataType.Float)]   // [in, out]: channels are columns
    [InlineData(0, TensorDataType.Float)]   // [out, in]: channels are rows
    [InlineData(1, TensorDataType.Float16)]
    [InlineData(0, TensorDataType.BFloat16)]
    public void Int8Weights_MatchFloat64Reference(int axis, TensorDataType type)
    {
        const int rows = 37, columns = 23;
        var random = new Random(7);
        var values = new float[rows * columns];
        for (int i = 0; i < values.Length; i++) values[i] = (float)((random.NextDouble() - 0.5) * Math.Pow(10, random.Next(-2, 2)));
        // A zero channel, an exact half-way value and a channel whose max is negative.
        for (int i = 0; i < (axis == 1 ? rows : columns); i++) values[axis == 1 ? i * columns + 3 : 3 * columns + i] = 0;
        values[5] = -12.5f;
        var tensor = Make(values, type, rows, columns);
        var stored = tensor.ToSingleArray(); // what the kernel reads: the fp16/bf16 values exactly

        var scales = PerChannelInt8.Scales(tensor, axis);
        var q = new Int8ChannelTensor(tensor, scales, axis);
        var bytes = q.Bytes.ToArray();
        int channels = axis == 1 ? columns : rows;
        Assert.Equal(channels, scales.Length);
        for (int c = 0; c < channels; c++)
        {
            double max = 0;
            for (int k = 0; k < (axis == 1 ? rows : columns); k++) max = Math.Max(max, Math.Abs((double)stored[Index(axis, c, k, columns)]));
            float expected = max == 0 ? 1f : (float)(max / 127.0);
            Assert.Equal(expected, scales[c]);
            for (int k = 0; k < (axis == 1 ? rows : columns); k++)
            {
                int i = Index(axis, c, k, columns);
                double r = Math.Round(stored[i] / (double)expected, MidpointRounding.ToEven);
                sbyte reference = (sbyte)Math.Max(-127, Math.Min(127, r));
                Assert.Equal(reference, unchecked((sbyte)bytes[i]));
                // Dequantized, every weight is within half a step of its value.
                Assert.True(Math.Abs(reference * (double)expected - stored[i]) <= expected / 2 * (1 + 1e-6), $"element {i}");
            }
        }
        Assert.Equal(1f, scales[3]); // the zero channel
        // The save path's chunked reads produce the same bytes.
        using var stream = new MemoryStream();
        q.CopyTo(stream);
        Assert.Equal(bytes, stream.ToArray());
        Assert.Equal(bytes.AsSpan(100, 50).ToArray(), q.GetBytes(100, 50).ToArray());
    }

    [Fact]
    public void NaNWeights_LeftOutOfTheMaximaAndQuantizedToZero()
    {
        var values = new float[] { 1, float.NaN, -2, 0.5f, 4, float.PositiveInfinity };
        var tensor = ArrayTensor.Create<float>(values, 3, 2);
        var scales = PerChannelInt8.Scales(tensor, 0);
        Assert.Equal((float)(1 / 127.0), scales[0]);
        Assert.Equal((float)(2 / 127.0), scales[1]);
        Assert.Equal(1f, scales[2]); // an infinite maximum gives no usable scale
        var q = new Int8ChannelTensor(tensor, scales, 0).Bytes.ToArray().Select(b => unchecked((sbyte)b)).ToArray();
        Assert.Equal(new sbyte[] { 127, 0, -127, 32, 4, 127 }, q);
    }

    private static int Index(int axis, int channel, int k, int columns) => axis == 1 ? k * columns + channel : channel * columns + k;

    private static Tensor Make(float[] values, TensorDataType type, int rows, int columns) => type switch
    {
        TensorDataType.Float => ArrayTensor.Create<float>(values, rows, columns),
        TensorDataType.Float16 => ArrayTensor.Create<Half>(values.Select(v => (Half)v).ToArray(), rows, columns),
        _ => ArrayTensor.Create<BFloat16>(values.Select(v => (BFloat16)v).ToArray(), rows, columns),
    };
}
