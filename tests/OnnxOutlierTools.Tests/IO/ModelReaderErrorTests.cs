using Google.Protobuf;
using Onnx.Protobuf;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.IO;

public class ModelReaderErrorTests
{
    private static readonly string GqaModel = Fixtures.Export("llama-genai-gqa-fp32", "model.onnx");

    [Fact]
    public void LoadFromBytes_FileBytes_GivesTheModelLoadGives()
    {
        using var fromFile = ModelReader.Load(GqaModel);
        using var fromBytes = ModelReader.LoadFromBytes(File.ReadAllBytes(GqaModel), GqaModel);

        Assert.Equal(Path.GetFullPath(GqaModel), fromBytes.SourcePath);
        Assert.Equal(fromFile.Graph.Nodes.Select(n => n.Describe()), fromBytes.Graph.Nodes.Select(n => n.Describe()));
        // External data is found beside the given path and mapped.
        Assert.All(fromBytes.Graph.Initializers, v => Assert.IsType<MappedTensor>(v.ConstValue));
        var a = fromFile.Graph.Initializers[0].ConstValue!;
        var b = fromBytes.Graph.Initializers[0].ConstValue!;
        Assert.True(a.Bytes.SequenceEqual(b.Bytes));
    }

    [Fact]
    public void LoadFromBytes_NoBytes_ReportsEmptyFile()
    {
        var ex = Assert.Throws<ModelLoadException>(() => ModelReader.LoadFromBytes([], "x.onnx"));
        Assert.Equal("x.onnx: empty file (0 bytes)", ex.Message);
    }

    [Fact]
    public void Load_TruncatedFile_ReportsOneLineErrorWithOffset()
    {
        using var temp = new TempFolder();
        string path = temp.Path("model.onnx");
        File.WriteAllBytes(path, File.ReadAllBytes(GqaModel)[..9000]);

        var ex = Assert.Throws<ModelLoadException>(() => ModelReader.Load(path));

        Assert.StartsWith($"{path}: not a valid ONNX protobuf: error at byte 9000 of 9000 (", ex.Message);
        Assert.Contains("truncated", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    public void Load_BlankPath_ReportsIt(string path)
    {
        var ex = Assert.Throws<ModelLoadException>(() => ModelReader.Load(path));
        Assert.Equal("empty path", ex.Problem);
    }

    [Fact]
    public void Load_ExternalOffsetNearLongMax_ReportsTooShortInsteadOfOverflowing()
    {
        using var temp = new TempFolder();
        string model = temp.CopyGqaModel();
        EditFirstExternalTensor(model, t => SetEntry(t, "offset", (long.MaxValue - 10).ToString()));

        var ex = Assert.Throws<ModelLoadException>(() => ModelReader.Load(model));

        Assert.Contains("external data file 'model.onnx.data' is too short", ex.Message);
    }

    [Fact]
    public void Load_ShapeWithTooManyElements_NamesTheInitializer()
    {
        using var temp = new TempFolder();
        string model = temp.CopyGqaModel();
        string name = EditFirstExternalTensor(model, t =>
        {
            t.Dims.Clear();
            t.Dims.Add([1L << 40, 1L << 40]);
            t.ExternalData.Remove(t.ExternalData.First(e => e.Key == "length"));
        });

        var ex = Assert.Throws<ModelLoadException>(() => ModelReader.Load(model));

        Assert.Equal($"{model}: initializer '{name}': shape [1099511627776,1099511627776] has more than {long.MaxValue} elements", ex.Message);
    }

    [Fact]
    public void Load_ShapeWithTooManyBytes_NamesTheInitializer()
    {
        using var temp = new TempFolder();
        string model = temp.CopyGqaModel();
        string name = EditFirstExternalTensor(model, t =>
        {
            t.Dims.Clear();
            t.Dims.Add([1L << 31, 1L << 31]); // 2^62 floats: 2^64 bytes
            t.ExternalData.Remove(t.ExternalData.First(e => e.Key == "length"));
        });

        var ex = Assert.Throws<ModelLoadException>(() => ModelReader.Load(model, new LoadOptions { RequireExternalData = false }));

        Assert.Contains($"initializer '{name}': FLOAT[2147483648,2147483648] is larger than", ex.Message);
    }

    [Fact]
    public void Load_ExternalTensorOfUnknownType_NamesTheInitializer()
    {
        using var temp = new TempFolder();
        string model = temp.CopyGqaModel();
        string name = EditFirstExternalTensor(model, t => t.DataType = 77);

        var ex = Assert.Throws<ModelLoadException>(() => ModelReader.Load(model));

        Assert.Equal($"{model}: initializer '{name}': unknown data type 77", ex.Message);
    }

    private static string EditFirstExternalTensor(string modelPath, Action<TensorProto> edit)
    {
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(modelPath));
        var tensor = proto.Graph.Initializer.First(t => t.DataLocation == TensorProto.Types.DataLocation.External);
        edit(tensor);
        File.WriteAllBytes(modelPath, proto.ToByteArray());
        return tensor.Name;
    }

    private static void SetEntry(TensorProto tensor, string key, string value)
    {
        var entry = tensor.ExternalData.FirstOrDefault(e => e.Key == key);
        if (entry is null) tensor.ExternalData.Add(new StringStringEntryProto { Key = key, Value = value });
        else entry.Value = value;
    }
}
