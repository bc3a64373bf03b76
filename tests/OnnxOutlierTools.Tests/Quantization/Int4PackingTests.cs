using OnnxOutlierTools.Quantization.Int4;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Quantization;

/// <summary>The int4 tensors (MatMulNBits' packed B, scales, zero points; the opset-21 INT4/UINT4 weight and its blocked
/// scales) decoded by the tests' own reader equal the float64 formula of <see cref="Int4Reference"/>, for both weight layouts,
/// symmetric and asymmetric, each block size, K a multiple of the block and not, fp32 and fp16 scales, one tile or many.</summary>
public class Int4PackingTests
{
    private static float[] RandomWeights(int count, int seed)
    {
        var random = new Random(seed);
        var w = new float[count];
        for (int i = 0; i < count; i++) w[i] = (float)((random.NextDouble() * 2 - 1) * (i % 7 == 0 ? 3 : 0.5));
        // A block of zeros, and one with a single outlier, exercise the edge cases of the scale.
        for (int i = 0; i < Math.Min(40, count); i++) w[i] = 0;
        if (count > 100) w[100] = 25f;
        return w;
    }

    public static TheoryData<int, int, bool, int> Cases()
    {
        var data = new TheoryData<int, int, bool, int>();
        foreach (int block in new[] { 32, 64, 128 })
            foreach (int k in new[] { 2 * block, 2 * block + 13 })
                foreach (bool symmetric in new[] { true, false })
                    data.Add(block, k, symmetric, k % 2 == 0 ? 9 : 6);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Tensors_DecodedByTheReader_EqualTheFloat64Formula(int blockSize, int k, bool symmetric, int n)
    {
        foreach (var scaleType in new[] { TensorDataType.Float, TensorDataType.Float16 })
            foreach (int inputAxis in new[] { 0, 1 })
                foreach (long tile in new[] { Int4Weight.DefaultTileElements, 50 })
                {
                    int rows = inputAxis == 0 ? k : n, columns = inputAxis == 0 ? n : k;
                    var values = RandomWeights(rows * columns, seed: k * 31 + n);
                    Tensor source = scaleType == TensorDataType.Float ? ArrayTensor.Create<float>(values, rows, columns)
                        : ArrayTensor.Create<Half>(values.Select(v => (Half)v).ToArray(), rows, columns);
                    var stored = source.ToSingleArray();
                    var expected = Int4Reference.Dequantize(stored, rows, columns, inputAxis, blockSize, symmetric, scaleType);
                    var weight = new Int4Weight("w", source, inputAxis, blockSize, symmetric, scaleType, tile);
                    string what = $"block {blockSize}, K {k}, N {n}, {(symmetric ? "sym" : "asym")}, {scaleType.OnnxName()}, axis {inputAxis}, tile {tile}";

                    var nbits = Int4Reference.DecodeNBits(Int4Tensors.MatMulNBitsWeight(weight).ToArrayTensor(), Int4Tensors.ChannelMajorScales(weight).ToArrayTensor(),
                        symmetric ? null : Int4Tensors.MatMulNBitsZeroPoints(weight).ToArrayTensor(), k, blockSize);
                    AssertEqual(expected, nbits, what + ", MatMulNBits");

                    var q = Int4Tensors.BlockedWeight(weight).ToArrayTensor();
                    Assert.Equal(symmetric ? TensorDataType.Int4 : TensorDataType.UInt4, q.DataType);
                    Assert.Equal(source.Dims, q.Dims);
                    var blocked = Int4Reference.DecodeBlocked(q, Int4Tensors.BlockedScales(weight).ToArrayTensor(),
                        symmetric ? null : Int4Tensors.BlockedZeroPoints(weight).ToArrayTensor(), inputAxis, blockSize);
                    AssertEqual(expected, blocked, what + ", DequantizeLinear-21");

                    // Round-to-nearest: every weight is within half a step of its dequantized value, or one step at the clamped ends of the
                    // range (the symmetric +8 code, the asymmetric ends shifted by the rounded zero point).
                    for (int c = 0; c < n; c++)
                        for (int j = 0; j < k; j++)
                        {
                            double w = inputAxis == 0 ? stored[j * columns + c] : stored[c * columns + j];
                            double step = Step(stored, rows, columns, inputAxis, blockSize, symmetric, c, j / blockSize);
                            Assert.True(Math.Abs(w - nbits[c, j]) <= step + 1e-6 * Math.Abs(w) + 1e-9,
                                $"{what}: w[{c},{j}] = {w}, dequantized {nbits[c, j]}, step {step}");
                        }
                }
    }

    private static double Step(float[] stored, int rows, int columns, int axis, int blockSize, bool symmetric, int c, int block)
    {
        int k = axis == 0 ? rows : columns;
        double min = 0, max = 0;
        for (int j = block * blockSize; j < Math.Min(k, (block + 1) * blockSize); j++)
        {
            double v = axis == 0 ? stored[j * columns + c] : stored[c * columns + j];
            min = Math.Min(min, v); max = Math.Max(max, v);
        }
        return (symmetric ? Math.Max(-min, max) / 8 : (max - min) / 15) * 1.001;
    }

    private static void AssertEqual(double[,] expected, double[,] actual, string what)
    {
        Assert.Equal(expected.GetLength(0), actual.GetLength(0));
        Assert.Equal(expected.GetLength(1), actual.GetLength(1));
        for (int i = 0; i < expected.GetLength(0); i++)
            for (int j = 0; j < expected.GetLength(1); j++)
                if (expected[i, j] != actual[i, j]) Assert.Fail($"{what}: [{i},{j}] expected {expected[i, j]}, got {actual[i, j]}");
    }

    [Fact]
    public void Quantize_NonFiniteWeight_OneLineNamingTheWeight()
    {
        var values = new float[64 * 4];
        values[70] = float.NaN;
        var weight = new Int4Weight("model.layers.0.mlp.down_proj.weight", ArrayTensor.Create<float>(values, 64, 4), 0, 32, true, TensorDataType.Float);
        var ex = Assert.Throws<Int4QuantizationException>(() => Int4Tensors.MatMulNBitsWeight(weight).ToArrayTensor());
        Assert.Contains("model.layers.0.mlp.down_proj.weight", ex.Message);
        Assert.Contains("NaN", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void Settings_BadValues_AreRefusedWithAReason()
    {
        Assert.Contains("block size", Assert.Throws<ArgumentOutOfRangeException>(() => new Int4Settings(blockSize: 48)).Message);
        Assert.Contains("accuracy_level", Assert.Throws<ArgumentOutOfRangeException>(() => new Int4Settings(accuracyLevel: 5)).Message);
        Assert.Throws<ArgumentException>(() => new Int4Settings(Int4Format.BlockedDequantize, accuracyLevel: 4));
    }
}
