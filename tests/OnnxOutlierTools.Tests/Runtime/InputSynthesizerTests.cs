using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Runtime;

public sealed class InputSynthesizerTests
{
    private static InputSpec Spec(string name, TensorDataType type, params object[] dims) =>
        new(name, type, dims.Select(d => d is string s ? Dim.Symbolic(s) : new Dim(Convert.ToInt64(d))).ToArray());

    private static readonly InputSynthesisOptions Bound = new()
    {
        Dims = new Dictionary<string, long> { ["batch"] = 2, ["seq"] = 3, ["past"] = 5 },
        IdUpperBound = 10,
    };

    [Fact]
    public void Create_IntegerIds_Are7iPlus3ModVocab()
    {
        var ids = InputSynthesizer.Create(Spec("input_ids", TensorDataType.Int64, "batch", "seq"), Bound);
        Assert.Equal([2L, 3], ids.Dims);
        Assert.Equal([3L, 0, 7, 4, 1, 8], ids.AsSpan<long>().ToArray());

        var ids32 = InputSynthesizer.Create(Spec("input_ids", TensorDataType.Int32, "batch", "seq"), Bound);
        Assert.Equal(TensorDataType.Int32, ids32.ElementType);
        Assert.Equal([3, 0, 7, 4, 1, 8], ids32.AsSpan<int>().ToArray());
    }

    [Fact]
    public void Create_MasksAreOnesAndPositionsCountFromTheOffset()
    {
        var mask = InputSynthesizer.Create(Spec("attention_mask", TensorDataType.Int64, "batch", "past + seq"), Bound);
        Assert.Equal([2L, 8], mask.Dims);
        Assert.All(mask.AsSpan<long>().ToArray(), v => Assert.Equal(1L, v));

        var boolMask = InputSynthesizer.Create(Spec("keep", TensorDataType.Bool, 4), Bound);
        Assert.Equal([1, 1, 1, 1], boolMask.Bytes.ToArray());

        var positions = InputSynthesizer.Create(Spec("position_ids", TensorDataType.Int64, "batch", "seq"), Bound with { PositionOffset = 5 });
        Assert.Equal([5L, 6, 7, 5, 6, 7], positions.AsSpan<long>().ToArray());
    }

    [Fact]
    public void Create_Floats_AreDeterministicInRangeAndDifferPerInput()
    {
        var a = InputSynthesizer.Create(Spec("past_0", TensorDataType.Float, 2, "batch", 4, "past", 8), Bound);
        var again = InputSynthesizer.Create(Spec("past_0", TensorDataType.Float, 2, "batch", 4, "past", 8), Bound);
        var other = InputSynthesizer.Create(Spec("past_1", TensorDataType.Float, 2, "batch", 4, "past", 8), Bound);
        var reseeded = InputSynthesizer.Create(Spec("past_0", TensorDataType.Float, 2, "batch", 4, "past", 8), Bound with { Seed = 7 });

        Assert.Equal([2L, 2, 4, 5, 8], a.Dims);
        var values = a.ToSingleArray();
        Assert.All(values, v => Assert.InRange(v, -0.1f, 0.1f));
        Assert.True(values.Distinct().Count() > values.Length * 9 / 10, "values look random");
        Assert.True(values.Min() < -0.09f && values.Max() > 0.09f, "values cover the range");
        Assert.True(a.Bytes.SequenceEqual(again.Bytes));
        Assert.False(a.Bytes.SequenceEqual(other.Bytes));
        Assert.False(a.Bytes.SequenceEqual(reseeded.Bytes));
    }

    [Fact]
    public void Create_Float16_IsTheFloat32ValuesRounded()
    {
        var f32 = InputSynthesizer.Create(Spec("x", TensorDataType.Float, 64), Bound);
        var f16 = InputSynthesizer.Create(Spec("x", TensorDataType.Float16, 64), Bound);
        Assert.Equal(128, f16.Bytes.Length);
        var expected = f32.ToSingleArray().Select(v => (float)(Half)v).ToArray();
        Assert.Equal(expected, f16.ToSingleArray());
    }

    [Fact]
    public void Create_EmptyPast_GivesZeroSizedTensor()
    {
        var past = InputSynthesizer.Create(Spec("past_key_values.0.key", TensorDataType.Float, "batch", 4, "empty", 8),
            Bound with { Dims = new Dictionary<string, long> { ["batch"] = 1, ["empty"] = 0 } });
        Assert.Equal([1L, 4, 0, 8], past.Dims);
        Assert.Equal(0, past.Bytes.Length);
    }

    [Fact]
    public void Create_Generator_WinsOverTheDefaultAndTakesTheInputName()
    {
        var options = Bound with
        {
            Generators = new Dictionary<string, InputGenerator>
            {
                ["token_type_ids"] = InputSynthesizer.FromIndex((pos, _) => pos % 2),
                ["max_length"] = (input, dims) => TensorData.Create("anything", new[] { 12 }, dims),
            },
        };
        var types = InputSynthesizer.Create(Spec("token_type_ids", TensorDataType.Int64, "batch", "seq"), options);
        Assert.Equal([0L, 1, 0, 0, 1, 0], types.AsSpan<long>().ToArray());
        var max = InputSynthesizer.Create(Spec("max_length", TensorDataType.Int32, 1), options);
        Assert.Equal("max_length", max.Name);
        Assert.Equal([12], max.AsSpan<int>().ToArray());
    }

    [Fact]
    public void Create_UnboundDimension_NamesInputAndDimension()
    {
        var ex = Assert.Throws<ArgumentException>(() => InputSynthesizer.Create(Spec("input_ids", TensorDataType.Int64, "batch", "sequence_length"), Bound));
        Assert.Contains("input_ids", ex.Message);
        Assert.Contains("sequence_length", ex.Message);
    }

    [Fact]
    public void Create_UnsupportedType_AsksForAGenerator()
    {
        var ex = Assert.Throws<NotSupportedException>(() => InputSynthesizer.Create(Spec("pixels", TensorDataType.UInt8, 4), Bound));
        Assert.Contains("pixels", ex.Message);
        Assert.Contains("generator", ex.Message);
    }

    [Fact]
    public void InputSpecs_FromSessionAndFromModel_Agree()
    {
        var recipe = FixtureRecipes.Get("llama-torch-past");
        using var model = ModelReader.Load(recipe.ModelPath);
        using var session = SessionFactory.Open(recipe.ModelPath, SessionSettings.CpuUnoptimized);
        var fromModel = InputSpec.FromModel(model);
        Assert.Equal(fromModel.Select(s => s.ToString()), session.Inputs.Select(s => s.ToString()));
        Assert.Equal("attention_mask: INT64[batch_size,past_sequence_length + sequence_length]", fromModel[1].ToString());
        Assert.True(InputSynthesizer.Create(fromModel, recipe.Inputs).Zip(session.SynthesizeInputs(recipe.Inputs))
            .All(p => p.First.Bytes.SequenceEqual(p.Second.Bytes)));
    }
}
